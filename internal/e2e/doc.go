// Package e2e holds modelgate's end-to-end tests in front of real model
// servers: the scikit-learn server of examples/sklearn (run as a child
// process under /usr/bin/python3) and the OpenAI-compatible streaming
// server of internal/llmtest. The tests start the real daemon in-process
// on :0 ports; the package has no code of its own.
package e2e
