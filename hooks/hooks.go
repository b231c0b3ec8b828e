// Package hooks speaks libvirt's qemu hook protocol: libvirtd execs the hook
// with DOMAIN OP SUBOP EXTRA and the domain XML on standard input; only
// migrate and restore may print a replacement XML. One small handler per
// operation turns a call into host-side work (package host).
//
// A hook never calls the libvirt API (libvirtd waits for it: deadlock),
// never starts a shell, bounds what it reads, and exits in milliseconds.
package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Request is one hook call: `qemu.d/virtap DOMAIN OP SUBOP EXTRA`.
type Request struct {
	Domain, Op, SubOp, Extra string
}

// ParseArgs reads libvirt's four arguments.
func ParseArgs(args []string) (Request, error) {
	if len(args) != 4 {
		return Request{}, fmt.Errorf("want 4 arguments (DOMAIN OP SUBOP EXTRA) as libvirt passes them, got %d", len(args))
	}
	return Request{Domain: args[0], Op: args[1], SubOp: args[2], Extra: args[3]}, nil
}

// Config is where the hook finds the policy and its state.
type Config struct {
	Log        hclog.Logger
	PolicyPath string
	StateDir   string
	Host       string // this host's name in the policy; "" = os.Hostname
	DevRoot    string
	SysfsRoot  string
	Stdout     io.Writer
	NoSync     bool // tests only
	// LockTimeout bounds the wait for other hooks holding the state lock.
	LockTimeout time.Duration
}

// Call is the context one handler works in.
type Call struct {
	Config
	Req   Request
	Input []byte
	Doc   *domain.Doc
	Guest *host.Guest
	log   hclog.Logger
}

// Handler runs one operation. Handlers that may fail the guest's start
// return an error; the others log and return nil.
type Handler interface {
	Handle(c *Call) error
}

var (
	_ Handler = prepare{}
	_ Handler = release{}
	_ Handler = rewrite{}
	_ Handler = reconnect{}
	_ Handler = verify{}
)

// Handlers maps libvirt's operations to virtap's handlers. Operations not
// listed (attach, ...) need nothing from virtap.
var Handlers = map[string]Handler{
	"prepare":   prepare{},
	"start":     verify{},
	"started":   verify{},
	"stopped":   release{},
	"release":   release{},
	"migrate":   rewrite{},
	"restore":   rewrite{},
	"reconnect": reconnect{},
}

// ErrTooLarge is returned for standard input over domain.MaxSize.
var ErrTooLarge = fmt.Errorf("domain XML on standard input is larger than %d bytes", domain.MaxSize)

// ReadInput reads at most domain.MaxSize bytes of the domain XML. Over
// that, it returns ErrTooLarge with what it read (the head of the
// document), for release to find the domain's UUID in.
func ReadInput(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, domain.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > domain.MaxSize {
		return data, ErrTooLarge
	}
	return data, nil
}

// Run handles one hook call. A nil error means exit 0.
func Run(cfg Config, req Request, stdin io.Reader) error {
	if _, ok := Handlers[req.Op]; !ok {
		return nil
	}
	input, err := ReadInput(stdin)
	if err != nil {
		if MayFail(req.Op) {
			return err
		}
		if errors.Is(err, ErrTooLarge) && Releases(req.Op) {
			return ReleaseOversize(cfg, req, input)
		}
		if cfg.Log != nil {
			cfg.Log.Named("hook").Warn("cannot read the domain XML; nothing to do", "op", req.Op, "error", err)
		}
		return nil
	}
	return RunInput(cfg, req, input)
}

// Manages says whether a hook call has work for virtap: an operation it
// handles on a document that carries virtap's record. Anything else exits
// 0 at once, before the hook even reads its settings.
func Manages(op string, input []byte) bool {
	_, ok := Handlers[op]
	return ok && bytes.Contains(input, []byte(domain.Namespace))
}

// RunInput handles one hook call whose input was already read.
func RunInput(cfg Config, req Request, input []byte) error {
	h, ok := Handlers[req.Op]
	if !ok {
		return nil
	}
	// The fast path: a domain virtap does not manage is not parsed.
	if !bytes.Contains(input, []byte(domain.Namespace)) {
		return nil
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	log := cfg.Log.Named("hook").With("op", req.Op)
	c := &Call{Config: cfg, Req: req, Input: input, log: log.With("domain", req.Domain)}
	d, err := domain.Parse(input)
	if err == nil {
		c.Doc = d
		c.Guest, err = host.NewGuest(d)
	}
	if err != nil {
		if MayFail(req.Op) {
			return err
		}
		c.log.Warn("cannot read the domain XML; nothing to do", "error", err)
		return nil
	}
	if d.Record == nil {
		return nil
	}
	c.log = c.log.With("uuid", c.Guest.UUID.String())
	if _, ok := h.(rewrite); !ok {
		if err := c.recordFromPolicy(); err != nil {
			c.summary(err)
			return err
		}
	}
	err = h.Handle(c)
	c.summary(err)
	return err
}

// done names, per operation, what a successful run did (the operator's
// log line; the lower layers log each device, reservation and filter).
var done = map[string]string{
	"prepare":   "prepared: host devices, reservations and leases in place",
	"start":     "start checked: devices present, filters on",
	"started":   "started: filters checked",
	"stopped":   "released",
	"release":   "released",
	"migrate":   "domain xml rewritten for this host",
	"restore":   "domain xml rewritten for this host",
	"reconnect": "reconnected: records and reservations rebuilt",
}

// summary logs one line per hook run: what it did, or why it refused.
func (c *Call) summary(err error) {
	switch {
	case err != nil && MayFail(c.Req.Op):
		c.log.Error("refused", "error", err)
	case err != nil:
		c.log.Error("failed", "error", err)
	default:
		n := 0
		if c.Doc.Record != nil { // release without a record the policy backs
			n = len(c.Doc.Record.Interfaces)
		}
		c.log.Info(done[c.Req.Op], "interfaces", n)
	}
}

// recordFromPolicy replaces the record in the XML by the one the current
// policy gives (provision.FromPolicy): the XML only says which network an
// interface joins. When the policy cannot back the record, operations that
// may fail the guest fail (closed); release works without a record (it
// then removes everything the store and the tags say is the guest's); the
// others keep the record's networks but treat every interface as untrusted.
func (c *Call) recordFromPolicy() error {
	pol, err := policy.Load(c.PolicyPath)
	var rec *domain.Record
	if err == nil {
		host, _ := pol.ResolveHost(c.Host)
		rec, err = provision.FromPolicy(c.Doc, pol, host)
	}
	switch {
	case err == nil:
		c.Doc.Record = rec
	case MayFail(c.Req.Op):
		return err
	case c.Req.Op == "release" || c.Req.Op == "stopped":
		c.log.Warn("the policy does not back the domain's record; releasing everything recorded or tagged for it", "error", err)
		c.Doc.Record = nil
	default:
		c.log.Error("the policy does not back the domain's record; treating every interface as untrusted", "error", err)
		for i := range c.Doc.Record.Interfaces {
			c.Doc.Record.Interfaces[i].Trust = policy.TrustUntrusted
		}
	}
	return nil
}

// MayFail: only these operations may stop the guest (or its migration).
func MayFail(op string) bool {
	switch op {
	case "prepare", "start", "migrate", "restore":
		return true
	}
	return false
}

// roots are the /dev and /sys the call works on.
func (c Config) roots() paths.Roots { return paths.Roots{Dev: c.DevRoot, Sys: c.SysfsRoot} }

// realiser opens the state store (taking the state lock) and netlink.
func (c *Call) realiser() (*host.Realiser, func(), error) {
	st, err := store.Open(c.StateDir, store.Options{Timeout: c.LockTimeout, NoSync: c.NoSync, Logger: c.log})
	if err != nil {
		return nil, nil, err
	}
	r := host.New(c.log, netdev.New(c.log, nil), st, c.roots())
	return r, func() { _ = st.Close() }, nil
}

type prepare struct{}

func (prepare) Handle(c *Call) error {
	r, done, err := c.realiser()
	if err != nil {
		return err
	}
	defer done()
	return r.Prepare(c.Guest)
}

// verify runs at start and started: the devices virtap made must be there,
// and untrusted interfaces get their anti-spoofing filters (SECURITY.md).
type verify struct{}

func (verify) Handle(c *Call) error {
	r, done, err := c.realiser()
	if err != nil {
		if c.Req.Op == "started" {
			c.log.Warn("cannot open state", "error", err)
			return nil
		}
		return err
	}
	defer done()
	errs := r.Verify(c.Guest)
	if c.Req.Op == "started" {
		for _, e := range errs {
			c.log.Warn("verify", "error", e)
		}
		// Anti-spoofing on libvirt's macvtaps, named in the live XML; a
		// failure cannot stop a running guest, so it is reported loudly.
		if err := r.Started(c.Guest); err != nil {
			c.log.Error("anti-spoofing filter not applied; the guest runs unfiltered", "error", err)
		}
		// Again now that the guest runs (after an incoming migration, the
		// first moment its addresses are really here).
		if err := r.Announce(c.Guest); err != nil {
			c.log.Warn("address announcement failed", "error", err)
		}
		return nil
	}
	// At start libvirt has created its macvtaps and QEMU does not run yet:
	// filter them now so that the guest's first frame is already checked.
	if err := r.Starting(c.Guest); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

type release struct{}

func (release) Handle(c *Call) error {
	r, done, err := c.realiser()
	if err != nil {
		// Without the state, the tags still say what is the guest's: remove
		// its devices and filters now; records and VF settings wait for gc.
		c.log.Error("release: cannot open state; removing tagged devices only, run 'virtap gc' later", "error", err)
		r := host.New(c.log, netdev.New(c.log, nil), nil, c.roots())
		if err := r.Release(c.Guest); err != nil {
			c.log.Error("release: tagged devices", "error", err)
		}
		return nil
	}
	defer done()
	if err := r.Release(c.Guest); err != nil {
		c.log.Error("release left something behind; 'virtap gc' removes it", "error", err)
	}
	return nil
}

type reconnect struct{}

func (reconnect) Handle(c *Call) error {
	r, done, err := c.realiser()
	if err != nil {
		// The guest runs fine without our records: never kill it for this.
		c.log.Warn("reconnect: cannot open state", "error", err)
		return nil
	}
	defer done()
	// A failure here makes libvirt kill the running guest. Even a lost
	// device only cuts one NIC of a guest that otherwise runs, so virtap
	// reports and never fails.
	if err := r.Reconnect(c.Guest); err != nil {
		c.log.Error("reconnect: not repaired; check 'virtap status'", "error", err)
	}
	// Filters may be gone while libvirtd was down (a firewall reload
	// flushes every table): apply them again; unchanged ones are kept.
	if err := r.Started(c.Guest); err != nil {
		c.log.Error("reconnect: anti-spoofing filter not applied; the guest runs unfiltered, see 'virtap status'", "error", err)
	}
	return nil
}
