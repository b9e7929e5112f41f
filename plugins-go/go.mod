module github.com/pabi-dev/pabi/plugins-go

go 1.24
