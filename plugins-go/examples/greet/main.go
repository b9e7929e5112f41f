// The `greet` example plugin: pabi_init takes the greeting prefix from the
// config ("Hello, " when it is empty); greet returns prefix + input + "!".
package main

import "github.com/pabi-dev/pabi/plugins-go/pabi"

var prefix = []byte("Hello, ")

//go:wasmexport pabi_init
//export pabi_init
func pabiInit(configLen int32) int32 {
	return pabi.Run(func() error {
		if config := pabi.Config(configLen); len(config) > 0 {
			prefix = config
		}
		return nil
	})
}

//go:wasmexport pabi_fn_greet
//export pabi_fn_greet
func greet(inputLen int32) int32 {
	return pabi.Handle(inputLen, func(input []byte) ([]byte, error) {
		out := make([]byte, 0, len(prefix)+len(input)+1)
		out = append(out, prefix...)
		out = append(out, input...)
		return append(out, '!'), nil
	})
}

func main() {}
