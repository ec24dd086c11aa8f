// Package hack holds the scripts that maintain the repository, such as update-codegen.sh (`make
// generate`), and the tests that keep their outputs current.
package hack
