package tollgate_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tollgate/tollgate"

// TestImportDirection keeps the house standing: the root imports no project
// package; adapters import the root but never each other, except audio/,
// a pure leaf library that imports only the root and that anyone may use. Only cmd/ and internal/ (test helpers, the demo model server, the
// load harness) may wire packages together.
func TestImportDirection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		if strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "internal/") {
			continue
		}
		checked++
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			switch {
			case rel == "":
				t.Errorf("root package imports %s: the domain imports only the standard library", imp)
			case dep == "":
				// Adapters import the root.
			case dep == "audio" && rel != "audio":
				// audio/ is a pure leaf library (no dependency, no I/O
				// beyond an io.Reader): anyone may use it.
			case strings.HasPrefix(dep, "internal/"):
				t.Errorf("%s imports %s: production packages do not import internal helpers", pkg, imp)
			default:
				t.Errorf("%s imports %s: adapters do not import each other; wire them in cmd/tollgate", pkg, imp)
			}
		}
	}
	if checked < 2 {
		t.Fatalf("checked only %d packages; go list output:\n%s", checked, out)
	}
}
