// Command triadctl administers a Triad license cluster.
package main

import (
	"fmt"
	"os"

	"github.com/triadlm/triad/admin"
)

func main() {
	if err := admin.App().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "triadctl:", err)
		os.Exit(1)
	}
}
