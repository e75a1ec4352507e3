//go:build !cgo

package main

// pkcs11Built reports PKCS#11 support (a cgo build), for --version.
const pkcs11Built = false
