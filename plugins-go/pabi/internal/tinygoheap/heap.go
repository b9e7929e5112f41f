//go:build tinygo && wasm_unknown && (gc.conservative || gc.precise)

package tinygoheap

import (
	"runtime"
	"runtime/volatile"
	_ "unsafe" // for go:linkname
)

// TinyGo 0.33's wasm-unknown target sets the heap's bounds in _initialize
// but never sets up the heap itself (runtime.initHeap). Its default
// collector, "leaking", needs nothing more, but it never frees, so a plugin
// built with it grows on every call (FN-7). With a collector that frees,
// the first allocation would read an uninitialized heap and trap.
//
// This package's initializer sets the heap up when nobody has. TinyGo runs
// package initializers at _initialize, each after those of the packages it
// imports, and otherwise in the order of their import paths; this one runs
// before package pabi's and the plugin's own. A package that initializes
// earlier (a standard package, or one whose path sorts first) must not
// allocate while the plugin starts: TinyGo evaluates most initializers
// while it compiles, so the standard packages the PDK and the examples use
// allocate nothing then.
//
//go:linkname initHeap runtime.initHeap
func initHeap()

// Read with a volatile load, which TinyGo cannot evaluate while it
// compiles: so this initializer runs when the plugin starts, as it must.
var ready uint32

// A global, so that reading the statistics allocates nothing.
var stats runtime.MemStats

func init() {
	if volatile.LoadUint32(&ready) != 0 {
		return
	}
	volatile.StoreUint32(&ready, 1)
	// A heap that is set up has blocks; a TinyGo that sets it up itself
	// (later versions do) must not have it set up twice, which would free
	// everything allocated so far.
	runtime.ReadMemStats(&stats)
	if stats.HeapSys == 0 {
		initHeap()
	}
}
