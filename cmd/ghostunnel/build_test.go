package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// The build tags the Makefile uses; keep these in step with its TAGS and
// LITE_TAGS.
const (
	// shipTags are the shipped build's: grpcnotrace leaves out gRPC's
	// golang.org/x/net/trace (request tracing we never enable), which would
	// link text/template and html/template.
	shipTags = "grpcnotrace"
	// liteTags build without OPA and the SPIFFE Workload API client.
	liteTags = "noopa,nospiffe"
)

// TestShippedBuildKeepsMethodDeadCode guards the binary's size and start-up
// RSS: if any linked package calls reflect's Method or MethodByName with a
// name known only at run time (text/template does), the linker has to keep
// every exported method of every reachable type. With gRPC's tracing
// compiled out nothing does, and the binary is 4 MB smaller. A new
// dependency that brings such a call back fails here, naming it.
func TestShippedBuildKeepsMethodDeadCode(t *testing.T) {
	if testing.Short() {
		t.Skip("links the binary; skipped with -short")
	}
	deps, err := exec.Command("go", "list", "-tags", shipTags, "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, deps)
	}
	for _, pkg := range []string{"golang.org/x/net/trace", "text/template", "html/template"} {
		for _, line := range strings.Fields(string(deps)) {
			if line == pkg {
				t.Errorf("the shipped build links %s", pkg)
			}
		}
	}

	// -dumpdep prints the linker's reachability graph, marking each
	// function that makes it give up on method dead-code elimination.
	cmd := exec.Command("go", "build", "-tags", shipTags, "-ldflags=-dumpdep", "-o", "/dev/null", ".")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build -ldflags=-dumpdep: %v\n%.2000s", err, out.String())
	}
	var culprits []string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "<ReflectMethod>") {
			culprits = append(culprits, strings.TrimSpace(line))
			if len(culprits) == 10 {
				break
			}
		}
	}
	if len(culprits) > 0 {
		t.Errorf("a linked function calls reflect's Method/MethodByName by a run-time name, so the linker keeps every exported method:\n%s",
			strings.Join(culprits, "\n"))
	}
}
