// assay's Go test harness (package main, built with the program and the tests).
// Its package-level variable is initialized before any init() and before the variables of the
// program's files (go build sorts files; this one sorts first), so it reads the nonce first.
// assert(cond) reports its caller's line in the tests file; records go to a private copy of
// stdout while the program's os.Stdout writes to stderr.
package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

var assayState = assayStart()

type assayHarness struct {
	nonce  string
	out    *os.File
	seen   map[int]bool
	failed map[int]bool
}

func assayStart() *assayHarness {
	data := make([]byte, 0, 128)
	buf := make([]byte, 128)
	for {
		n, err := syscall.Read(0, buf)
		if n > 0 {
			data = append(data, buf[:n]...)
		}
		if n <= 0 || err != nil {
			break
		}
	}
	if null, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0); err == nil {
		syscall.Dup2(null, 0)
		syscall.Close(null)
	}
	fd, _ := syscall.Dup(1)
	syscall.Dup2(2, 1)
	return &assayHarness{strings.TrimSpace(string(data)), os.NewFile(uintptr(fd), "assay"), map[int]bool{}, map[int]bool{}}
}

func (h *assayHarness) emit(json string) {
	h.out.Write([]byte("\n@@assay:" + h.nonce + " " + json + "\n"))
}

func assert(ok bool) {
	_, file, line, _ := runtime.Caller(1)
	if !strings.HasSuffix(file, "assay_tests.go") {
		return
	}
	if assayState.failed[line] {
		return
	}
	if !ok {
		assayState.failed[line] = true
		assayState.emit(`{"t": "test", "line": ` + strconv.Itoa(line) + `, "ok": false, "msg": "assertion failed"}`)
	} else if !assayState.seen[line] {
		assayState.seen[line] = true
		assayState.emit(`{"t": "test", "line": ` + strconv.Itoa(line) + `, "ok": true, "msg": ""}`)
	}
}

func main() {
	func() {
		defer func() {
			if r := recover(); r != nil {
				assayState.emit(`{"t": "fatal", "msg": ` + strconv.Quote(assayPanicText(r)) + `}`)
			}
		}()
		assayTestsMain()
	}()
	assayState.emit(`{"t": "done"}`)
	syscall.Exit(0)
}

func assayPanicText(r interface{}) string {
	if e, ok := r.(error); ok {
		return "panic: " + e.Error()
	}
	if s, ok := r.(string); ok {
		return "panic: " + s
	}
	return "panic"
}
