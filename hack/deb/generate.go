package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/goreleaser/nfpm/v2/files"
)

// generate writes man pages, completions and the compressed changelog
// into stage and returns them as package contents.
func generate(o options, stage string, when time.Time) (files.Contents, error) {
	docs := filepath.Join(stage, "docs")
	run := exec.Command(o.Virtap, "gen-docs", "--date", when.Format("2006-01-02"), docs)
	if out, err := run.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s gen-docs: %v\n%s", o.Virtap, err, out)
	}
	var out files.Contents
	pages, err := filepath.Glob(filepath.Join(docs, "man8", "*.8"))
	if err != nil || len(pages) == 0 {
		return nil, fmt.Errorf("gen-docs wrote no man pages (%v)", err)
	}
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		c, err := gzipped(stage, b, "/usr/share/man/man8/"+filepath.Base(p)+".gz")
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	policyPage, err := policyManPage(filepath.Join(o.Root, "README.md"), when)
	if err != nil {
		return nil, err
	}
	c, err := gzipped(stage, policyPage, "/usr/share/man/man5/virtap-policy.toml.5.gz")
	if err != nil {
		return nil, err
	}
	out = append(out, c)
	changelog, err := os.ReadFile(filepath.Join(o.Root, "contrib", "debian", "changelog"))
	if err != nil {
		return nil, err
	}
	if c, err = gzipped(stage, changelog, DocDir+"/changelog.gz"); err != nil {
		return nil, err
	}
	out = append(out, c)
	comp := filepath.Join(docs, "completion")
	out = append(out,
		file(filepath.Join(comp, "virtap.bash"), "/usr/share/bash-completion/completions/virtap", 0o644),
		file(filepath.Join(comp, "_virtap"), "/usr/share/zsh/vendor-completions/_virtap", 0o644),
		file(filepath.Join(comp, "virtap.fish"), "/usr/share/fish/vendor_completions.d/virtap.fish", 0o644))
	return out, nil
}

// gzipped writes data compressed as Debian wants it (best compression, no
// name, no time stamp) into stage and returns it as destined for dst.
func gzipped(stage string, data []byte, dst string) (*files.Content, error) {
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	src := filepath.Join(stage, "gz", strings.TrimPrefix(dst, "/"))
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(src, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return file(src, dst, 0o644), nil
}

// policyManPage renders virtap-policy.toml(5) from the README's "Policy
// reference" section: one text for both, so the page names every key the
// README does (and the README test checks that it names every key).
func policyManPage(readme string, when time.Time) ([]byte, error) {
	b, err := os.ReadFile(readme)
	if err != nil {
		return nil, err
	}
	_, rest, ok := strings.Cut(string(b), "\n## Policy reference\n")
	if !ok {
		return nil, fmt.Errorf("%s: no \"## Policy reference\" section", readme)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	var md strings.Builder
	fmt.Fprintf(&md, "%% \"VIRTAP-POLICY.TOML\" \"5\" %q \"virtap\" \"virtap manual\"\n", when.Format("Jan 2006"))
	md.WriteString("# NAME\nvirtap-policy.toml \\- the host policy of virtap\n\n")
	md.WriteString("# SYNOPSIS\n**" + PolicyFile + "**\n\n")
	md.WriteString("# DESCRIPTION\n")
	md.WriteString("The policy says which network each guest interface joins and how. ")
	md.WriteString("**virtap policy check** validates it; the hook reads it at every guest start.\n\n")
	md.WriteString("# KEYS\n")
	md.WriteString(strings.ReplaceAll(section, "\n### ", "\n## "))
	md.WriteString("\n# FILES\n**" + PolicyFile + "**, **" + HookConfig + "**\n\n")
	md.WriteString("# SEE ALSO\n**virtap**(8), **virtap-policy-check**(8)\n")
	return md2man.Render([]byte(md.String())), nil
}

// elfDepends returns the packages (with minimum versions) of the shared
// libraries bin links: dpkg-shlibdeps's answer (symbols files) when
// dpkg-dev is installed, else the NEEDED entries mapped with dpkg-query
// and the shlibs files.
func elfDepends(bin string) ([]string, error) {
	if deps, err := shlibdeps(bin); err == nil {
		return deps, nil
	}
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, lib := range libs {
		dep, err := libPackage(lib)
		if err != nil {
			return nil, err
		}
		set[dep] = true
	}
	var deps []string
	for d := range set {
		deps = append(deps, d)
	}
	sort.Strings(deps)
	return deps, nil
}

func libPackage(lib string) (string, error) {
	var path string
	for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib"} {
		if _, err := os.Stat(filepath.Join(dir, lib)); err == nil {
			path = filepath.Join(dir, lib)
			break
		}
	}
	if path == "" {
		return "", fmt.Errorf("%s: not found in the library directories (install its -dev package)", lib)
	}
	out, err := exec.Command("dpkg-query", "-S", path).Output()
	if err != nil {
		// /lib is a symlink to /usr/lib on merged-/usr systems: ask for both.
		alt := "/usr" + path
		if strings.HasPrefix(path, "/usr/") {
			alt = strings.TrimPrefix(path, "/usr")
		}
		if out, err = exec.Command("dpkg-query", "-S", alt).Output(); err != nil {
			return "", fmt.Errorf("no package ships %s: %v", path, err)
		}
	}
	pkg, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
	soname := strings.SplitN(lib, ".so.", 2)
	for _, shlibs := range []string{"/var/lib/dpkg/info/" + pkg + ":amd64.shlibs", "/var/lib/dpkg/info/" + pkg + ".shlibs"} {
		b, err := os.ReadFile(shlibs)
		if err != nil || len(soname) != 2 {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 3 && fs[0] == soname[0] && fs[1] == soname[1] {
				return strings.Join(fs[2:], " "), nil
			}
		}
	}
	return pkg, nil
}

// shlibdeps runs dpkg-shlibdeps on bin in a scratch tree (it wants a
// debian/control) and returns its shlibs:Depends.
func shlibdeps(bin string) ([]string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "virtap-shlibdeps-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Mkdir(filepath.Join(dir, "debian"), 0o755); err != nil {
		return nil, err
	}
	control := "Source: virtap\n\nPackage: virtap\nArchitecture: amd64\n"
	if err := os.WriteFile(filepath.Join(dir, "debian", "control"), []byte(control), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("dpkg-shlibdeps", "-O", abs)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "shlibs:Depends="); ok {
			var deps []string
			for _, d := range strings.Split(v, ",") {
				deps = append(deps, strings.TrimSpace(d))
			}
			return deps, nil
		}
	}
	return nil, fmt.Errorf("dpkg-shlibdeps printed no shlibs:Depends")
}
