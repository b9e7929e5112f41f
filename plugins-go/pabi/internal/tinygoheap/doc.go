// Package tinygoheap sets up the heap of a TinyGo 0.33 wasm-unknown plugin
// built with a collector that frees (-gc=conservative or -gc=precise)
// before any of the plugin's code runs; see heap.go. With Go, or with
// another TinyGo target or collector, it is empty. Package pabi imports it,
// so every plugin gets it.
package tinygoheap
