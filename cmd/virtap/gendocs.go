package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// genDocsCmd writes the man pages of the command tree (section 8) and the
// shell completions, for packagers ('make deb' runs it). Hidden: it is a
// build step, not something an operator runs.
func genDocsCmd() *cobra.Command {
	var date string
	cmd := &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write man pages (DIR/man8) and shell completions (DIR/completion) for packaging",
		Hidden: true,
		Args:   args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			when := time.Now().UTC()
			if date != "" {
				t, err := time.Parse("2006-01-02", date)
				if err != nil {
					return usageError{fmt.Errorf("--date %q: want YYYY-MM-DD", date)}
				}
				when = t
			}
			return genDocs(cmd.Root(), a[0], when)
		},
	}
	cmd.Flags().StringVar(&date, "date", "", "the date the man pages carry (YYYY-MM-DD; default today)")
	return cmd
}

func genDocs(root *cobra.Command, dir string, when time.Time) error {
	man := filepath.Join(dir, "man8")
	comp := filepath.Join(dir, "completion")
	for _, d := range []string{man, comp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{Section: "8", Date: &when, Source: "virtap " + version, Manual: "virtap manual"}
	if err := doc.GenManTree(root, hdr, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	gens := []struct {
		name string
		gen  func(path string) error
	}{
		{"virtap.bash", func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
		{"_virtap", root.GenZshCompletionFile},
		{"virtap.fish", func(p string) error { return root.GenFishCompletionFile(p, true) }},
	}
	for _, g := range gens {
		if err := g.gen(filepath.Join(comp, g.name)); err != nil {
			return fmt.Errorf("completion %s: %w", g.name, err)
		}
	}
	return nil
}
