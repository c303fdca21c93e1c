package main

import (
	"flag"

	"github.com/spiagent/spiagent/agent/auth"
)

// addLoginFlags adds the login backoff's flags of `spiagent run` (one
// backoff for gNMI and NETCONF).
func addLoginFlags(fs *flag.FlagSet) *auth.BackoffConfig {
	c := &auth.BackoffConfig{}
	fs.IntVar(&c.SourceFree, "login-source-failures", auth.DefaultSourceFree, "failed logins from one address (IPv6: one /64) before it must wait, 1s doubling per further failure")
	fs.IntVar(&c.UserFree, "login-user-failures", auth.DefaultUserFree, "failed logins to one user from all addresses before addresses that failed themselves must wait for it")
	fs.DurationVar(&c.Max, "login-backoff-max", auth.DefaultBackoffMax, "longest wait imposed after failed logins")
	return c
}
