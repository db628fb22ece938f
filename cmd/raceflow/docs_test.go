package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsStandOnTheRepositoryAlone: the README and docs/ link only files
// a clone has, and never a folder beside the repository.
func TestDocsStandOnTheRepositoryAlone(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	mention := regexp.MustCompile("`(docs/[A-Za-z]+\\.(md|json))`")
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NotRegexp(t, `\.\./shared|shared/docs|\bdomain\.md\b`, string(b), "%s points outside the repository", f)
		for _, m := range mention.FindAllStringSubmatch(string(b), -1) {
			_, err := os.Stat(filepath.Join(root, m[1]))
			require.NoError(t, err, "%s mentions %s", f, m[1])
		}
	}
	for _, want := range []string{"DESIGN.md", "DOMAIN.md"} {
		b, err := os.ReadFile(filepath.Join(root, "README.md"))
		require.NoError(t, err)
		require.Contains(t, string(b), "docs/"+want, "the README leads to the design and the domain")
	}
}
