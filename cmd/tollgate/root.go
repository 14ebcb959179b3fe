package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/config"
)

func newRootCmd(stdout, stderr io.Writer, environ []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "An API gateway for AI model APIs: keys, limits, quotas and one error contract",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newServeCmd(stdout, stderr, environ),
		newDemoCmd(stdout, stderr, environ),
		newCheckConfigCmd(stdout, environ),
		newBenchCmd(stdout, stderr, environ),
		newBenchWSCmd(stdout, stderr),
		newDemoModelCmd(stdout),
	)
	addAdminCmds(root, stdout, environ)
	return root
}

func newServeCmd(stdout, stderr io.Writer, environ []string) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway from a config file",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(path, environ)
			if err != nil {
				return err
			}
			m := &Main{Config: c, Logger: slog.New(slog.NewJSONHandler(stderr, nil))}
			if err := m.Open(cmd.Context()); err != nil {
				m.Close()
				return err
			}
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "tollgate.yaml", "config file (YAML); TOLLGATE_* variables override it")
	return cmd
}

func newCheckConfigCmd(stdout io.Writer, environ []string) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate a config file and report every problem at once (like nginx -t)",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(path, environ)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: ok (%d models, %d plans)\n", path, len(c.Models), len(c.Plans))
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "tollgate.yaml", "config file to check")
	return cmd
}

// lookupEnv finds name in environ (the process's, passed in so tests can
// set their own).
func lookupEnv(environ []string, name string) string {
	for i := len(environ) - 1; i >= 0; i-- {
		if len(environ[i]) > len(name) && environ[i][:len(name)] == name && environ[i][len(name)] == '=' {
			return environ[i][len(name)+1:]
		}
	}
	return ""
}
