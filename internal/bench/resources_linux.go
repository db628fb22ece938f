//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the process has used.
func processCPU() time.Duration { return rusageCPU(syscall.RUSAGE_SELF) }

// threadCPU is the CPU time the calling OS thread has used.
func threadCPU() time.Duration { return rusageCPU(syscall.RUSAGE_THREAD) }

func rusageCPU(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS makes the kernel's high-water mark start again from the
// current RSS (writing 5 to clear_refs, Linux 4.0+), so the peak reported
// is the measured phase's, not the setup's. It reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// loadAvg is the first three fields of /proc/loadavg: how busy the
// machine was, which a reader of the figures needs to know.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return ""
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}

// machineTicks returns the busy and total CPU ticks of the whole machine
// (the "cpu" line of /proc/stat), for how busy the machine was while the
// batches ran: the database server and other processes included.
func machineTicks() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0
		}
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total
}

// peakRSS is VmHWM, the peak resident set size, in bytes.
func peakRSS() int64 { return statusKB("VmHWM:") * 1024 }

// currentRSS is VmRSS, the resident set size now, in bytes.
func currentRSS() int64 { return statusKB("VmRSS:") * 1024 }

func statusKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte(field)); ok {
			fields := bytes.Fields(rest)
			if len(fields) == 0 {
				return 0
			}
			kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
			if err != nil {
				return 0
			}
			return kb
		}
	}
	return 0
}

// clockTick is the kernel's clock tick, in which /proc reports CPU times
// (USER_HZ: 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// pidCPU is the CPU time (user + system) process pid has used, from
// /proc/<pid>/stat; false when it is gone or unreadable.
func pidCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces: count from its end.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 13 { // utime and stime are fields 14 and 15, 12 and 13 after the name
		return 0, false
	}
	utime, err1 := strconv.ParseInt(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * clockTick, true
}
