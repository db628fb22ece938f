//go:build !linux

package bench

import "time"

// The measurements below need Linux's /proc and RUSAGE_THREAD; elsewhere
// they report zero and the report says so.

func processCPU() time.Duration { return 0 }
func threadCPU() time.Duration  { return 0 }
func resetPeakRSS() bool        { return false }
func peakRSS() int64            { return 0 }
func currentRSS() int64         { return 0 }
func loadAvg() string           { return "" }

func machineTicks() (busy, total uint64) { return 0, 0 }

func pidCPU(int) (time.Duration, bool) { return 0, false }
