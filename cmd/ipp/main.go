// Command ipp is Instance-per-Pod: an admission webhook and a controller that give every isolation
// class of Pods its own cloud instance. See `ipp --help`.
package main

import (
	"os"

	"github.com/ipp-project/ipp/cmd/ipp/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:]))
}
