package doctor

import (
	"fmt"
	"strings"

	"github.com/virtap/virtap/internal/fleet"
)

// CheckFleet: the fleet's etcd answers and has a leader ([fleet] only).
const CheckFleet = "fleet"

// fleetCheck reports the fleet store's health: ok when every member
// answers, warn when some do not but the cluster still has a leader (it
// keeps leasing), fail when none answers (provisioning a guest with a pool
// address fails; guests already provisioned still start).
func (r *run) fleetCheck() {
	if r.env.Fleet == nil {
		return
	}
	eps, ok := r.env.Fleet()
	var down, up []string
	for _, e := range eps {
		if e.Error != "" {
			down = append(down, e.Endpoint)
		} else {
			up = append(up, e.Endpoint+" (etcd "+e.Version+")")
		}
	}
	res := Result{Check: CheckFleet, Device: strings.Join(endpoints(eps), ",")}
	switch {
	case !ok:
		res.Status = Fail
		res.Detail = fmt.Sprintf("no etcd member answers with a leader (%d endpoint(s))", len(eps))
		if len(eps) > 0 && eps[0].Error != "" {
			res.Detail += ": " + eps[0].Error
		}
		res.Advice = "start etcd or fix [fleet] etcd/cert/key/ca; until then guests with pool addresses cannot be provisioned (already provisioned ones still start)"
	case len(down) > 0:
		res.Status = Warn
		res.Detail = fmt.Sprintf("%s do not answer; %s do", strings.Join(down, ", "), strings.Join(up, ", "))
		res.Advice = "the cluster keeps leasing while a majority answers; bring the other members back"
	default:
		res.Status = OK
		res.Detail = "every member answers: " + strings.Join(up, ", ")
	}
	r.rep.add(res)
}

func endpoints(eps []fleet.EndpointStatus) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Endpoint)
	}
	return out
}
