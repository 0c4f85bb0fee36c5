module github.com/blockport/blockport

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/ncw/directio v1.0.5
	golang.org/x/sys v0.50.0
)
