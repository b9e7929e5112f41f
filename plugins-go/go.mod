module github.com/pabi-dev/pabi/plugins-go

// 1.23, not 1.24: TinyGo 0.33 lists the module with Go 1.23, which refuses
// a module that asks for a newer Go. Go 1.24 and later still build
// //go:wasmexport in a module at this language version.
go 1.23
