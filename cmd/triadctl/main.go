// Command triadctl administers a Triad license cluster.
package main

import (
	"fmt"
	"os"

	"github.com/triadlm/triad/admin"
)

func main() {
	app := admin.App()
	if err := app.Run(admin.InterspersedArgs(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "triadctl:", err)
		os.Exit(1)
	}
}
