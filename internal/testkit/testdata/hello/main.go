// Command hello prints hello: what testkit's test builds.
package main

import "fmt"

func main() { fmt.Println("hello") }
