package hostside

import (
	"errors"

	"github.com/google/uuid"

	"github.com/virtap/virtap/provision/domain"
)

// IfaceRecordAlias keeps the extension files short.
type IfaceRecordAlias = domain.IfaceRecord

// releaseExtras undoes what prepareAddresses and applyFilter made for a
// domain: host routes and neighbours, filters. Leases are kept until the
// domain is undefined or gc finds it gone.
func (r *Realiser) releaseExtras(u uuid.UUID) error {
	return errors.Join(r.releaseAddresses(u), r.removeFilters(u))
}
