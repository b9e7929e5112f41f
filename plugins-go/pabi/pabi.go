// Package pabi is the Go plugin development kit for pabi, the plugin ABI for
// WebAssembly. The same source builds with Go >= 1.24 and with TinyGo 0.33:
//
//	package main
//
//	import "github.com/pabi-dev/pabi/plugins-go/pabi"
//
//	//go:wasmexport pabi_fn_shout
//	//export pabi_fn_shout
//	func shout(inputLen int32) int32 {
//		return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
//			return append(bytes.ToUpper(input), '!'), nil
//		})
//	}
//
//	func main() {}
//
// Each export carries two directives, one per compiler: Go exports a
// function named by //go:wasmexport and ignores //export outside cgo;
// TinyGo 0.33 exports one named by //export and ignores //go:wasmexport,
// which it does not know yet. No build tag is needed.
//
// Build a reactor module, then add the metadata section (neither linker can
// write custom sections):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o raw.wasm .
//	# or: tinygo build -target=wasm-unknown -gc=conservative -no-debug -opt=z -o raw.wasm .
//	pabi embed --metadata pabi.json raw.wasm -o plugin.wasm
//
// Go's runtime imports a few wasi_snapshot_preview1 functions (clock,
// random, fd_write, ...), so a Go build uses the `wasi` profile. TinyGo's
// wasm-unknown target imports only what //go:wasmimport names, so a TinyGo
// build uses the `core` profile.
//
// # What crosses the boundary
//
// Exports (//go:wasmexport, //export) take and return int32 only: the input, config or
// state length in, a status out. Imports (//go:wasmimport) take int32/uint32
// and an unsafe.Pointer to the first byte of a Go []byte (or string) that
// the host reads or fills during the import call. No other Go type crosses:
// not slices, strings, structs, interfaces or Go-allocated memory handed to
// the host to keep.
//
// # Why no pinning is needed
//
// pabi copies bytes in and out; no buffer ever changes owner. The host only
// touches plugin memory inside an import call (input_read, output_write,
// error_write, log, host_call, reply_read), synchronously, on the goroutine
// that made the call, and keeps no pointer once the call returns. The buffer is a live argument of
// that call, so the garbage collector cannot free it, and neither the Go nor
// the TinyGo collector moves objects. runtime.Pinner exists for pointers the
// other side keeps after a call returns; pabi never does that. Nothing is
// exported for the host to allocate or free, so there is no allocator to get
// wrong.
package pabi

import (
	"io"
	"unsafe"

	// Sets up the heap of a TinyGo wasm-unknown plugin before anything
	// allocates (see the package); empty under Go.
	_ "github.com/pabi-dev/pabi/plugins-go/pabi/internal/tinygoheap"
)

// Status is what a plugin function returns.
type Status int32

const (
	OK           Status = 0 // the output is what was written
	InvalidInput Status = 1 // the input (or config, or state) was refused
	Unsupported  Status = 2 // the plugin does not support the request
	Failed       Status = 3 // the call failed for another reason
	OutOfMemory  Status = 4 // the plugin ran out of memory
	// Plugin-defined statuses are 64..127, described in the metadata.
	CustomMin Status = 64
	CustomMax Status = 127
)

// Codes the imports return (ERR-5). A plugin handles them; none is a trap.
const (
	ELimit       int32 = -1 // a cap was reached: message truncated, host-call request or reply too large
	EInvalid     int32 = -2 // an argument out of its domain, e.g. an unknown log level
	EUnavailable int32 = -3 // not usable in this phase, e.g. output in pabi_init
	EFailed      int32 = -4 // ABI 1.1: a host call's handler failed; the reply is its message
	EAbsent      int32 = -5 // ABI 1.1: an optional host call this host does not offer
)

// Log levels.
const (
	LevelError int32 = 0
	LevelWarn  int32 = 1
	LevelInfo  int32 = 2
	LevelDebug int32 = 3
	LevelTrace int32 = 4
)

// The raw imports of module `pabi`, ABI 1.0. Pointers and lengths are
// unsigned 32-bit values in the plugin's memory.

//go:wasmimport pabi input_read
func inputRead(dst unsafe.Pointer, offset uint32, length uint32) int32

//go:wasmimport pabi output_write
func outputWrite(src unsafe.Pointer, length uint32) int32

//go:wasmimport pabi error_write
func errorWrite(src unsafe.Pointer, length uint32) int32

//go:wasmimport pabi log
func logWrite(level int32, src unsafe.Pointer, length uint32) int32

// ABI 1.1 (host calls, CALL-1). A plugin that calls HostCall declares
// "abi": "1.1" and each name in its metadata's `host_calls`; the linker
// imports only what a plugin uses, so others do not import these (IMP-4).

//go:wasmimport pabi host_call
func hostCall(name unsafe.Pointer, nameLen uint32, req unsafe.Pointer, reqLen uint32) int32

//go:wasmimport pabi reply_read
func replyRead(dst unsafe.Pointer, offset uint32, length uint32) int32

// ptr is the address of the first byte of b, for an import call; nil for an
// empty slice (the host reads no bytes then).
func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// strPtr is the address of the first byte of s, for an import call.
func strPtr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// ReadAt copies up to len(buf) input bytes starting at offset into buf and
// returns how many it copied, 0 past the end (pabi.input_read).
func ReadAt(buf []byte, offset uint32) int {
	if len(buf) == 0 {
		return 0
	}
	n := inputRead(ptr(buf), offset, uint32(len(buf)))
	if n < 0 {
		return 0
	}
	return int(n)
}

// Input reads the whole input of the current call: length is the argument
// of the export (for pabi_init it is the config, for pabi_state_load the
// state).
func Input(length int32) []byte {
	buf := make([]byte, uint32(length))
	filled := 0
	for filled < len(buf) {
		n := ReadAt(buf[filled:], uint32(filled))
		if n == 0 {
			break
		}
		filled += n
	}
	return buf[:filled]
}

// Config reads the config inside a pabi_init export; it is Input by another
// name.
func Config(configLen int32) []byte { return Input(configLen) }

// Reader reads the input in pieces, at increasing offsets, so the input
// never has to fit in memory at once. It implements io.Reader.
type Reader struct {
	offset uint32
	length uint32
}

// NewReader returns a Reader over the input of length bytes.
func NewReader(length int32) *Reader { return &Reader{length: uint32(length)} }

// Read implements io.Reader; it returns (0, io.EOF) at the end.
func (r *Reader) Read(p []byte) (int, error) {
	remaining := r.length - r.offset
	if remaining == 0 {
		return 0, io.EOF
	}
	if uint32(len(p)) > remaining {
		p = p[:remaining]
	}
	n := ReadAt(p, r.offset)
	if n == 0 {
		return 0, io.EOF
	}
	r.offset += uint32(n)
	return n, nil
}

// Output appends b to the output of the current call (pabi.output_write).
// It fails where output is unavailable, e.g. in pabi_init.
func Output(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if code := outputWrite(ptr(b), uint32(len(b))); code != 0 {
		return &Error{Status: Failed, Message: "output_write returned " + itoa(int64(code))}
	}
	return nil
}

// OutputString appends s to the output.
func OutputString(s string) error {
	if len(s) == 0 {
		return nil
	}
	if code := outputWrite(strPtr(s), uint32(len(s))); code != 0 {
		return &Error{Status: Failed, Message: "output_write returned " + itoa(int64(code))}
	}
	return nil
}

// Writer is an io.Writer over Output.
type Writer struct{}

// Write implements io.Writer.
func (Writer) Write(p []byte) (int, error) {
	if err := Output(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteError appends msg to the error message of the current call
// (pabi.error_write). It returns false when the host truncated it.
func WriteError(msg string) bool {
	if len(msg) == 0 {
		return true
	}
	return errorWrite(strPtr(msg), uint32(len(msg))) == 0
}

// Fail writes msg as the error message and returns status as an int32, for
// use as `return pabi.Fail(pabi.InvalidInput, "...")` in an export.
func Fail(status Status, msg string) int32 {
	WriteError(msg)
	return int32(status)
}

// Log sends a line to the host's log at level (LevelError .. LevelTrace).
func Log(level int32, msg string) {
	logWrite(level, strPtr(msg), uint32(len(msg)))
}

// HostCallError is why a host call gave no reply: Code is what host_call
// returned (EFailed, EAbsent, ELimit, EUnavailable, or a code this package
// does not know) and Message, for EFailed, the handler's message. None is a
// trap: the plugin decides what each means (CALL-4). Compare with the
// sentinels, by code:
//
//	reply, err := pabi.HostCall("kv.get", key)
//	if errors.Is(err, pabi.ErrAbsent) { ... }
//	if e, ok := err.(*pabi.HostCallError); ok && e.Code == pabi.EFailed { ... e.Message ... }
//
// Returned from Handle's or Run's function, it fails the call with FAILED
// and its Error text.
type HostCallError struct {
	Code    int32
	Message string
}

// The HostCallError of each code, for errors.Is; they have no message.
var (
	ErrFailed      = &HostCallError{Code: EFailed}
	ErrAbsent      = &HostCallError{Code: EAbsent}
	ErrLimit       = &HostCallError{Code: ELimit}
	ErrUnavailable = &HostCallError{Code: EUnavailable}
)

// Error reads as the Rust PDK's HostCallError does, so a plugin that
// reports it has the same message in every language.
func (e *HostCallError) Error() string {
	switch e.Code {
	case EFailed:
		return "the host's handler failed: " + e.Message
	case EAbsent:
		return "the host does not offer this call"
	case ELimit:
		return "the request or the reply is larger than the host allows"
	case EUnavailable:
		return "host calls are not available in this phase"
	}
	return "host_call returned " + itoa(int64(e.Code))
}

// Is reports whether target is a *HostCallError with the same code, so that
// errors.Is(err, ErrAbsent) matches whatever the message.
func (e *HostCallError) Is(target error) bool {
	t, ok := target.(*HostCallError)
	return ok && t.Code == e.Code
}

// HostCall calls the host call name (declared in the metadata) with request
// and returns the reply, or a *HostCallError. The host copies the request
// out and keeps the reply; HostCall copies it into a new slice. No buffer
// changes owner.
func HostCall(name string, request []byte) ([]byte, error) {
	code := hostCall(strPtr(name), uint32(len(name)), ptr(request), uint32(len(request)))
	if code >= 0 {
		return readReply(uint32(code)), nil
	}
	if code == EFailed {
		// The reply holds the handler's message.
		return nil, &HostCallError{Code: code, Message: LossyUTF8(readMessage())}
	}
	return nil, &HostCallError{Code: code}
}

// Offers reports whether the host offers the optional host call name to
// this plugin, found by calling it with an empty request (CALL-5): use it
// only for calls whose empty request has no effect.
func Offers(name string) bool {
	_, err := HostCall(name, nil)
	e, ok := err.(*HostCallError)
	return !ok || e.Code != EAbsent
}

// readReply reads the whole reply of length bytes into one slice.
func readReply(length uint32) []byte {
	buf := make([]byte, length)
	filled := 0
	for filled < len(buf) {
		n := replyRead(ptr(buf[filled:]), uint32(filled), uint32(len(buf)-filled))
		if n <= 0 {
			break
		}
		filled += int(n)
	}
	return buf[:filled]
}

// readMessage reads a failure message, whose length host_call does not
// return: in pieces, up to the 64 KiB a host keeps (CALL-4).
func readMessage() []byte {
	var message []byte
	var chunk [1024]byte
	for len(message) < 64<<10 {
		n := replyRead(unsafe.Pointer(&chunk[0]), uint32(len(message)), uint32(len(chunk)))
		if n <= 0 {
			break
		}
		message = append(message, chunk[:n]...)
	}
	return message
}

// LossyUTF8 returns b as UTF-8 text, each maximal invalid subsequence
// replaced by one U+FFFD, as Rust's String::from_utf8_lossy does, so that
// messages built from untrusted bytes are the same in every language
// (strings.ToValidUTF8 replaces a whole run of invalid bytes with one).
func LossyUTF8(b []byte) string {
	var out []byte
	run := 0
	for i := 0; i < len(b); {
		step, valid := utf8Step(b[i:])
		if !valid {
			if out == nil {
				out = make([]byte, 0, len(b)+2)
			}
			out = append(out, b[run:i]...)
			out = append(out, "\uFFFD"...)
			run = i + step
		}
		i += step
	}
	if out == nil {
		return string(b)
	}
	return string(append(out, b[run:]...))
}

// utf8Step returns the length of the UTF-8 sequence at the start of s (not
// empty) and whether it is valid; an invalid one is the longest prefix of a
// valid sequence, at least one byte (no overlong forms, no surrogates,
// nothing above U+10FFFF).
func utf8Step(s []byte) (int, bool) {
	b := s[0]
	if b < 0x80 {
		return 1, true
	}
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch {
	case b >= 0xC2 && b <= 0xDF:
		need = 1
	case b == 0xE0:
		need, lo = 2, 0xA0
	case b == 0xED:
		need, hi = 2, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		need = 2
	case b == 0xF0:
		need, lo = 3, 0x90
	case b == 0xF4:
		need, hi = 3, 0x8F
	case b >= 0xF1 && b <= 0xF3:
		need = 3
	default:
		return 1, false
	}
	i := 1
	for i <= need && i < len(s) && s[i] >= lo && s[i] <= hi {
		i++
		lo, hi = 0x80, 0xBF
	}
	return i, i > need
}

// Error is a failed call: a non-zero status and a message for the host.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Message }

// NewInvalidInput returns an INVALID_INPUT error.
func NewInvalidInput(msg string) *Error { return &Error{Status: InvalidInput, Message: msg} }

// NewUnsupported returns an UNSUPPORTED error.
func NewUnsupported(msg string) *Error { return &Error{Status: Unsupported, Message: msg} }

// NewFailed returns a FAILED error.
func NewFailed(msg string) *Error { return &Error{Status: Failed, Message: msg} }

// NewCustom returns a plugin-defined status (64..127); any other code
// becomes FAILED. Describe the code in the metadata's `statuses`.
func NewCustom(code Status, msg string) *Error {
	if code < CustomMin || code > CustomMax {
		return &Error{Status: Failed, Message: msg}
	}
	return &Error{Status: code, Message: msg}
}

// Handle is the short path for a plugin function: it reads the whole input,
// calls f, and writes f's output (status OK) or its error message (the
// *Error's status, or FAILED for any other error). A panic in f becomes
// FAILED with the panic message where the toolchain can recover it.
//
//	//go:wasmexport pabi_fn_echo
//	//export pabi_fn_echo
//	func echo(n int32) int32 {
//		return pabi.Handle(n, func(in []byte) ([]byte, error) { return in, nil })
//	}
func Handle(inputLen int32, f func(input []byte) ([]byte, error)) int32 {
	return Run(func() error {
		out, err := f(Input(inputLen))
		if err != nil {
			return err
		}
		return Output(out)
	})
}

// Run runs the body of an export and turns its error into a status (OK for
// nil). Use it for exports that stream with Reader and Writer, and for
// pabi_init, pabi_shutdown and the state exports.
func Run(body func() error) (status int32) {
	defer func() {
		if r := recover(); r != nil {
			msg := "panic"
			switch v := r.(type) {
			case string:
				msg = "panic: " + v
			case error:
				msg = "panic: " + v.Error()
			}
			Log(LevelError, msg)
			status = Fail(Failed, msg)
		}
	}()
	err := body()
	if err == nil {
		return int32(OK)
	}
	if e, ok := err.(*Error); ok {
		st := e.Status
		if st == OK {
			st = Failed
		}
		return Fail(st, e.Message)
	}
	return Fail(Failed, err.Error())
}

// itoa formats a signed integer in decimal.
func itoa(v int64) string {
	if v < 0 {
		return "-" + Utoa(uint64(-v))
	}
	return Utoa(uint64(v))
}

// Utoa formats an unsigned integer in decimal (no strconv needed).
func Utoa(v uint64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(buf[i:])
}
