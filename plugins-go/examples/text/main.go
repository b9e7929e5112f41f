// The `text` example plugin: echo, reverse, upper, wordcount, fnv1a64 and
// lines. Its results are byte for byte those of the Rust and C versions
// (fixtures/vectors/text.json).
package main

import (
	"strconv"
	"unicode/utf8"

	"github.com/pabi-dev/pabi/plugins-go/pabi"
)

//go:wasmexport pabi_fn_echo
//export pabi_fn_echo
func echo(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		return input, nil
	})
}

//go:wasmexport pabi_fn_reverse
//export pabi_fn_reverse
func reverse(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		for i, j := 0, len(input)-1; i < j; i, j = i+1, j-1 {
			input[i], input[j] = input[j], input[i]
		}
		return input, nil
	})
}

//go:wasmexport pabi_fn_upper
//export pabi_fn_upper
func upper(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		if !utf8.Valid(input) {
			return nil, pabi.NewInvalidInput("input is not valid UTF-8")
		}
		for i, b := range input {
			if b >= 'a' && b <= 'z' {
				input[i] = b - ('a' - 'A')
			}
		}
		return input, nil
	})
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == 0x0b || b == 0x0c || b == '\r'
}

//go:wasmexport pabi_fn_wordcount
//export pabi_fn_wordcount
func wordcount(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		var words, lines uint64
		inWord := false
		for _, b := range input {
			if b == '\n' {
				lines++
			}
			if isSpace(b) {
				inWord = false
			} else if !inWord {
				inWord = true
				words++
			}
		}
		out := make([]byte, 0, 64)
		out = append(out, `{"bytes":`...)
		out = strconv.AppendUint(out, uint64(len(input)), 10)
		out = append(out, `,"words":`...)
		out = strconv.AppendUint(out, words, 10)
		out = append(out, `,"lines":`...)
		out = strconv.AppendUint(out, lines, 10)
		out = append(out, '}')
		return out, nil
	})
}

//go:wasmexport pabi_fn_fnv1a64
//export pabi_fn_fnv1a64
func fnv1a64(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		hash := uint64(0xcbf29ce484222325)
		for _, b := range input {
			hash ^= uint64(b)
			hash *= 0x100000001b3
		}
		const digits = "0123456789abcdef"
		out := make([]byte, 16)
		for i := 15; i >= 0; i-- {
			out[i] = digits[hash&15]
			hash >>= 4
		}
		return out, nil
	})
}

// lines numbers lines as N\tLINE\n, reading the input 4 KiB at a time and
// writing as it goes, so neither the input nor a line is held whole.
//
//go:wasmexport pabi_fn_lines
//export pabi_fn_lines
func lines(inputLen int32) int32 {
	return pabi.Run(func() error {
		in := pabi.NewReader(inputLen)
		out := newBuffered(64 * 1024)
		chunk := make([]byte, 4096)
		var number uint64
		atLineStart := true
		for {
			// Read's only error is io.EOF. Testing for any error, rather than
			// comparing with io.EOF, keeps TinyGo's interface comparison,
			// and the reflect code it brings (float instructions, MOD-7),
			// out of the plugin.
			n, err := in.Read(chunk)
			if err != nil {
				break
			}
			rest := chunk[:n]
			for len(rest) > 0 {
				if atLineStart {
					number++
					out.write(strconv.AppendUint(out.scratch[:0], number, 10))
					out.write([]byte{'\t'})
					atLineStart = false
				}
				end := indexByte(rest, '\n')
				if end < 0 {
					out.write(rest)
					rest = nil
				} else {
					out.write(rest[:end+1])
					rest = rest[end+1:]
					atLineStart = true
				}
			}
		}
		if !atLineStart {
			out.write([]byte{'\n'})
		}
		return out.flush()
	})
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// buffered collects output and hands it to the host in large pieces.
type buffered struct {
	buf     []byte
	scratch [20]byte
	err     error
}

func newBuffered(size int) *buffered { return &buffered{buf: make([]byte, 0, size)} }

func (w *buffered) write(p []byte) {
	for len(p) > 0 && w.err == nil {
		if len(w.buf) == cap(w.buf) {
			w.err = w.flush()
		}
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
	}
}

func (w *buffered) flush() error {
	if w.err != nil {
		return w.err
	}
	err := pabi.Output(w.buf)
	w.buf = w.buf[:0]
	return err
}

func main() {}
