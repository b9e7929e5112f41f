// The `enrich` example plugin: a pipeline operator that enriches records by
// asking the application that hosts it (ABI 1.1 host calls). Its results
// are byte for byte those of the Rust and C versions, and so are the host
// calls it makes (fixtures/vectors/enrich.json).
//
//   - enrich: for each line KEY of the input (lines end with \n; the last
//     may not; empty lines are skipped) it calls kv.get with KEY and writes
//     KEY\tVALUE\n, then calls kv.note with KEY, whose answer it ignores: the
//     call is optional, and a host that does not offer it returns E_ABSENT.
//     A failed kv.get ends the call with FAILED and the message
//     `kv.get KEY: REASON`.
//   - offered: {"kv.note":true} or {"kv.note":false}.
package main

import (
	"bytes"
	"strconv"

	"github.com/pabi-dev/pabi/plugins-go/pabi"
)

//go:wasmexport pabi_fn_enrich
//export pabi_fn_enrich
func enrich(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		out := make([]byte, 0, len(input)*2)
		for len(input) > 0 {
			key := input
			if i := bytes.IndexByte(input, '\n'); i >= 0 {
				key, input = input[:i], input[i+1:]
			} else {
				input = nil
			}
			if len(key) == 0 {
				continue
			}
			value, err := pabi.HostCall("kv.get", key)
			if err != nil {
				return nil, failure(key, err)
			}
			out = append(out, key...)
			out = append(out, '\t')
			out = append(out, value...)
			out = append(out, '\n')
			// Optional: absent on hosts that do not offer it, and its answer
			// does not change the output.
			_, _ = pabi.HostCall("kv.note", key)
		}
		return out, nil
	})
}

// failure is `kv.get KEY: REASON`, the same words in every language.
func failure(key []byte, err error) error {
	reason := err.Error()
	if e, ok := err.(*pabi.HostCallError); ok {
		switch e.Code {
		case pabi.EFailed:
			reason = e.Message
		case pabi.EAbsent:
			reason = "not offered"
		case pabi.ELimit:
			reason = "too large"
		case pabi.EUnavailable:
			reason = "unavailable"
		default:
			reason = "code " + strconv.Itoa(int(e.Code))
		}
	}
	return pabi.NewFailed("kv.get " + pabi.LossyUTF8(key) + ": " + reason)
}

//go:wasmexport pabi_fn_offered
//export pabi_fn_offered
func offered(inputLen int32) int32 {
	return pabi.Handle(inputLen, func([]byte) ([]byte, error) {
		if pabi.Offers("kv.note") {
			return []byte(`{"kv.note":true}`), nil
		}
		return []byte(`{"kv.note":false}`), nil
	})
}

func main() {}
