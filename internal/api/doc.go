// Package api is the admin API's wire contract (version 1): every type a
// request body or an answer of /api/v1 is made of, and the headers, defined
// once and shared by the server (internal/admin and the packages that build
// its answers), the CLI and the tests. It sits at the bottom of the import
// graph: it imports only internal/spec, whose types are the declarative
// schema the config file and the API share.
//
// The server decodes request bodies with DecodeJSON, strictly (an unknown
// field is an error); clients decode answers leniently, so that a newer
// server may add fields without breaking an older CLI. docs/api.md
// documents every call; its examples are checked against these types
// (docs_test.go).
package api
