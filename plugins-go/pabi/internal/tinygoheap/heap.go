//go:build tinygo && wasm_unknown && (gc.conservative || gc.precise)

package tinygoheap

import (
	"runtime/volatile"
	_ "unsafe" // for go:linkname
)

// TinyGo 0.33's wasm-unknown target sets the heap's bounds in _initialize
// but never sets up the heap itself (runtime.initHeap). Its default
// collector, "leaking", needs nothing more, but it never frees, so a plugin
// built with it grows on every call (FN-7). With a collector that frees,
// the first allocation would read an uninitialized heap and trap.
//
// This package's initializer sets the heap up. It runs at _initialize
// before those of the packages that import it (package pabi, then the
// plugin), and it is the package's only code, so nothing is allocated
// before it. The standard packages it and pabi import allocate nothing
// when the plugin starts: TinyGo evaluates their initializers while it
// compiles.
//
//go:linkname initHeap runtime.initHeap
func initHeap()

// Read with a volatile load, which TinyGo cannot evaluate while it
// compiles: so this initializer runs when the plugin starts, as it must.
var ready uint32

func init() {
	if volatile.LoadUint32(&ready) == 0 {
		initHeap()
		volatile.StoreUint32(&ready, 1)
	}
}
