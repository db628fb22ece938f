package bench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProgressLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Progress
		want string
	}{
		{"start", Progress{Iteration: 1, Iterations: 2, Total: 5},
			"measuring [..........]   0% iteration 1/2, 0/5 polls"},
		{"half way through the second of two", Progress{Iteration: 2, Iterations: 2, Done: 2, Total: 4},
			"measuring [#######...]  75% iteration 2/2, 2/4 polls"},
		{"done", Progress{Iteration: 2, Iterations: 2, Done: 4, Total: 4},
			"measuring [##########] 100% iteration 2/2, 4/4 polls"},
		{"warm-up", Progress{Warmup: true, Iteration: 1, Iterations: 1, Done: 1, Total: 1},
			"warm-up   [##########] 100% iteration 1/1, 1/1 polls"},
		{"late answers never overflow", Progress{Iteration: 1, Iterations: 1, Done: 9, Total: 4},
			"measuring [##########] 100% iteration 1/1, 4/4 polls"},
		{"nothing to do", Progress{}, "measuring [..........]   0% iteration 0/0, 0/0 polls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, ProgressLine(tt.in, 10))
		})
	}
}
