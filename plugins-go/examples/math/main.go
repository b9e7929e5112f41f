// The `math` example plugin: `double`, the seed's process(x) = x * 2 over a
// little-endian i32, wrapping on overflow.
package main

import (
	"encoding/binary"
	"strconv"

	"github.com/pabi-dev/pabi/plugins-go/pabi"
)

//go:wasmexport pabi_fn_double
//export pabi_fn_double
func double(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		if len(input) != 4 {
			return nil, pabi.NewInvalidInput("double needs exactly 4 bytes, got " + strconv.Itoa(len(input)))
		}
		x := int32(binary.LittleEndian.Uint32(input))
		return binary.LittleEndian.AppendUint32(nil, uint32(x*2)), nil // Go's int32 arithmetic wraps
	})
}

func main() {}
