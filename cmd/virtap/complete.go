package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/virtap/virtap/provision/policy"
)

// completionPolicy loads the policy for shell completion: the --policy
// given on the command line being completed, else the default. Completion
// must never fail loudly, so a policy that does not load completes nothing.
func completionPolicy(g *globals, cmd *cobra.Command) *policy.Policy {
	path := g.policyPath
	if f := cmd.Flags().Lookup("policy"); f != nil && f.Changed {
		path = f.Value.String()
	}
	p, err := policy.Load(path)
	if err != nil {
		return nil
	}
	return p
}

// completeHosts completes --host with the hosts that have a section.
func completeHosts(g *globals, cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("host", func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		p := completionPolicy(g, cmd)
		if p == nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return withPrefix(p.Hosts(), prefix), cobra.ShellCompDirectiveNoFileComp
	})
}

// completeNetworks completes a NETWORK argument with the networks that the
// host in *host (default: this machine) sees.
func completeNetworks(g *globals, host *string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, a []string, prefix string) ([]string, cobra.ShellCompDirective) {
		p := completionPolicy(g, cmd)
		if p == nil || len(a) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		h, _ := p.ResolveHost(*host)
		return withPrefix(p.NetworkNames(h), prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
