// Command floor is the benchmark's Go anchor for the hook: the least a Go
// hook can do, read its standard input and exit. Built with CGO_ENABLED=0.
package main

import (
	"io"
	"os"
)

func main() {
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		os.Exit(1)
	}
}
