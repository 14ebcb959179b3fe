// Command tollgate is the gateway: serve, demo, check-config and the admin
// CLI. main only parses and runs; Main holds the wiring and is what the
// end-to-end tests run.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:])) }

// run runs the command line args until it ends or the process gets
// SIGINT or SIGTERM (serve and demo then shut down gracefully), and
// returns the exit code.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd(os.Stdout, os.Stderr, os.Environ())
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tollgate:", err)
		return 1
	}
	return 0
}
