package image

import (
	"os"
	"path/filepath"

	"github.com/virtap/virtap/test/internal/run"
)

// CacheDir is where downloaded kernels and built initramfs images live:
// $VIRTAP_TEST_CACHE, else test/.cache in the repository (gitignored).
func CacheDir() (string, error) {
	if d := os.Getenv("VIRTAP_TEST_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := run.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "test", ".cache"), nil
}
