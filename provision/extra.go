package provision

import (
	"fmt"
	"strings"

	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// checkAdded holds the run-time extra addresses a record carries (virtap
// addr wrote them; a migrated guest brings them) to the current policy:
// each must be one the network allows, and with the policy's own extras
// at most max_extra_addresses. The policy, not the record, decides.
func checkAdded(nw *policy.Network, r domain.IfaceRecord) error {
	total := 0
	for _, f := range strings.Fields(r.Extra + " " + r.Added) {
		p, err := policy.ParseExtra(f)
		if err == nil {
			err = nw.CheckExtra(p)
		}
		if err != nil {
			return fmt.Errorf("extra address %s: %v; take it back with virtap addr del", f, err)
		}
		total += policy.ExtraSize(p)
	}
	if total > nw.MaxExtraAddresses {
		return fmt.Errorf("%d extra addresses (%s %s), more than network %q's max_extra_addresses = %d; take some back with virtap addr del or raise the limit",
			total, r.Extra, r.Added, nw.Name, nw.MaxExtraAddresses)
	}
	return nil
}
