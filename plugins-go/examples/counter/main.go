// The `counter` example plugin: each call adds 1 to a count kept in the
// instance and returns it in decimal; the count survives a reload through
// pabi_state_save / pabi_state_load (8 bytes, little-endian).
package main

import (
	"encoding/binary"
	"strconv"

	"github.com/pabi-dev/pabi/plugins-go/pabi"
)

var count uint64

//go:wasmexport pabi_fn_counter
//export pabi_fn_counter
func counter(inputLen int32) int32 {
	return pabi.Run(func() error {
		count++
		return pabi.Output(strconv.AppendUint(nil, count, 10))
	})
}

//go:wasmexport pabi_state_save
//export pabi_state_save
func stateSave() int32 {
	return pabi.Run(func() error {
		return pabi.Output(binary.LittleEndian.AppendUint64(nil, count))
	})
}

//go:wasmexport pabi_state_load
//export pabi_state_load
func stateLoad(stateLen int32) int32 {
	return pabi.Run(func() error {
		state := pabi.Input(stateLen)
		if len(state) != 8 {
			return pabi.NewInvalidInput("counter state needs exactly 8 bytes, got " + strconv.Itoa(len(state)))
		}
		count = binary.LittleEndian.Uint64(state)
		return nil
	})
}

func main() {}
