package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/spiagent/spiagent/agent/auth"
)

// cmdUser manages the gNMI users file:
//
//	spiagent user add NAME --role read-only|read-write   (password on standard input)
//	spiagent user del NAME
func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 2 || (args[0] != "add" && args[0] != "del") {
		fmt.Fprintln(stderr, "usage: spiagent user add NAME --role read-only|read-write [--data-dir DIR | --users-file FILE] < password")
		fmt.Fprintln(stderr, "       spiagent user del NAME [--data-dir DIR | --users-file FILE]")
		return exitUsage
	}
	verb, name := args[0], args[1]
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "/var/lib/spiagent", "the agent's data directory")
	usersFile := fs.String("users-file", "", "users file; default DATA-DIR/users")
	roleName := fs.String("role", "", "read-only or read-write (add)")
	if err := fs.Parse(args[2:]); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || strings.HasPrefix(name, "-") {
		fmt.Fprintf(stderr, "spiagent user %s: the user name comes first, then flags\n", verb)
		return exitUsage
	}
	file := usersPath(*usersFile, *dataDir)
	if verb == "del" {
		if err := auth.DelUser(file, name); err != nil {
			fmt.Fprintf(stderr, "spiagent: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "deleted user %s from %s\n", name, file)
		return 0
	}
	role, err := auth.ParseRole(*roleName)
	if err != nil {
		fmt.Fprintf(stderr, "spiagent user add: --role: %v\n", err)
		return exitUsage
	}
	pw, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "spiagent user add: read password: %v\n", err)
		return 1
	}
	pw = strings.TrimRight(pw, "\r\n")
	if err := auth.AddUser(file, name, role, []byte(pw)); err != nil {
		fmt.Fprintf(stderr, "spiagent: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "user %s (%s) written to %s\n", name, role, file)
	return 0
}
