package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/demomodel"
)

// DemoModelAddr is where `tollgate demo-model` listens by default, and the
// upstream the example deployments in examples/ name.
const DemoModelAddr = "127.0.0.1:9100"

// newDemoModelCmd is `tollgate demo-model`: the demo model server alone on
// a fixed address, the upstream of the example deployments, so each runs
// by hand:
//
//	tollgate demo-model &
//	tollgate serve --config examples/tts/tollgate.yaml
func newDemoModelCmd(stdout io.Writer) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "demo-model",
		Short: "Run the demo model server alone (the upstream of the examples in examples/)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := demomodel.Listen(listen)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(stdout, "demo model server on %s (Ctrl-C stops it)\n", s.URL)
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", DemoModelAddr, "address to listen on")
	return cmd
}
