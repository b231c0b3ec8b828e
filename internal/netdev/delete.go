package netdev

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Delete removes the device called name if it carries a virtap tag. A device
// that is already gone is success; an untagged one gives ErrNotOurs.
func (m *Manager) Delete(name string) error {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	return m.deleteLink(m.h, l)
}

func (m *Manager) deleteLink(h *netlink.Handle, l netlink.Link) error {
	a := l.Attrs()
	if _, ok := ParseTag(a.Alias); !ok {
		return fmt.Errorf("%w: refusing to delete %s (alias %q)", ErrNotOurs, a.Name, a.Alias)
	}
	// LinkDel addresses the link by index: the very device we checked.
	if err := h.LinkDel(l); err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", a.Name, err)
	}
	m.log.Info("deleted device", "device", a.Name, "index", a.Index, "tag", a.Alias)
	return nil
}

// DeleteTagged deletes every virtap-tagged device whose tag filter accepts
// (nil: all), with up to workers parallel netlink sockets: each link
// deletion waits for an RCU grace period, so parallel requests overlap those
// waits. It returns the names deleted; err joins the failures.
func (m *Manager) DeleteTagged(filter func(Tag) bool, workers int) (deleted []string, err error) {
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var todo []netlink.Link
	for _, l := range links {
		t, ok := ParseTag(l.Attrs().Alias)
		if ok && (filter == nil || filter(t)) {
			todo = append(todo, l)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	if workers < 1 {
		workers = 1
	}
	if workers > len(todo) {
		workers = len(todo)
	}
	// Handles for workers: in the Manager's namespace. Without a known
	// namespace (New with a non-nil handle) work serially through m.h.
	// A Manager of the calling thread's namespace (New(log, nil)) always
	// needs handles bound to that namespace: its zero Handle opens sockets
	// in whatever namespace the worker goroutine's thread is in.
	handles := []*netlink.Handle{m.h}
	if (workers > 1 && m.hasNS) || m.current {
		ns := m.ns
		if m.current {
			if ns, err = netns.Get(); err != nil {
				return nil, fmt.Errorf("current netns: %w", err)
			}
			defer ns.Close()
		}
		handles = handles[:0]
		for i := 0; i < workers; i++ {
			h, herr := netlink.NewHandleAt(ns)
			if herr != nil {
				m.log.Warn("fewer delete workers", "workers", i, "error", herr)
				break
			}
			defer h.Close()
			handles = append(handles, h)
		}
		if len(handles) == 0 {
			handles = []*netlink.Handle{m.h}
		}
	}
	jobs := make(chan netlink.Link)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, h := range handles {
		wg.Add(1)
		go func(h *netlink.Handle) {
			defer wg.Done()
			for l := range jobs {
				derr := m.deleteLink(h, l)
				mu.Lock()
				if derr != nil {
					errs = append(errs, derr)
				} else {
					deleted = append(deleted, l.Attrs().Name)
				}
				mu.Unlock()
			}
		}(h)
	}
	for _, l := range todo {
		jobs <- l
	}
	close(jobs)
	wg.Wait()
	m.log.Debug("deleted tagged devices", "count", len(deleted), "workers", len(handles), "failed", len(errs))
	return deleted, errors.Join(errs...)
}
