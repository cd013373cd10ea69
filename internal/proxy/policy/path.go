package policy

import (
	"bytes"
)

// TargetPath appends to dst the path a backend whose base path is prefix
// gets for rest, what followed the endpoint segment of the client's
// request target ("/v1/models/m:predict?x=1"): the prefix, then rest with
// its dot segments resolved (RFC 3986 section 5.2.4; "%2e" counts as a
// dot), the query kept as it came. A path whose ".." segments would climb
// above the endpoint's root ("/fraud/../../admin") is refused (400, as
// nginx does for a path above the root): the gateway never sends a path
// outside the backend's prefix. So is a path that a backend could read as
// climbing where the gateway reads none: a dot segment behind an encoded
// slash or backslash ("..%2f", "%5c"), a backslash, or a ';' parameter
// ("..;/", as Tomcat reads it). Everything else in the path goes as the
// client wrote it, percent-encoding included.
func TargetPath(dst, prefix, rest []byte) ([]byte, error) {
	path, query := rest, []byte(nil)
	if i := bytes.IndexByte(rest, '?'); i >= 0 {
		path, query = rest[:i], rest[i:]
	}
	dst = append(dst, prefix...)
	base := len(dst) // the resolved path never goes below this
	if !hasDotSegment(path) && !hiddenDots(path) {
		if len(path) == 0 || path[0] != '/' {
			dst = append(dst, '/')
		}
		dst = append(dst, path...)
		return append(dst, query...), nil
	}
	for len(path) > 0 {
		if path[0] == '/' {
			path = path[1:]
		}
		seg := path
		if i := bytes.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i:]
		} else {
			path = nil
		}
		last := len(path) == 0
		switch dots(seg) {
		case 1: // "." stays where it is
			if last {
				dst = append(dst, '/')
			}
		case 2: // ".." removes the segment before it
			i := bytes.LastIndexByte(dst[base:], '/')
			if i < 0 {
				return nil, badRequest("path climbs above the endpoint's root with \"..\"")
			}
			dst = dst[:base+i]
			if last {
				dst = append(dst, '/')
			}
		default:
			dst = append(dst, '/')
			dst = append(dst, seg...)
		}
	}
	if len(dst) == base {
		dst = append(dst, '/')
	}
	if hiddenDots(dst[base:]) {
		return nil, badRequest("ambiguous path: a dot segment behind an encoded slash, a backslash or a ';' parameter")
	}
	return append(dst, query...), nil
}

// hiddenDots reports whether path holds a "." or ".." segment when "%2f",
// "%5c" and '\' are taken for slashes and each segment's ';' parameters
// are dropped, as some backends read a path.
func hiddenDots(path []byte) bool {
	if !bytes.ContainsAny(path, "%\\;") {
		return false // the plain dot segments are resolved already
	}
	start := 0
	for i := 0; i <= len(path); i++ {
		sep := 0
		switch {
		case i == len(path) || path[i] == '/' || path[i] == '\\':
			sep = 1
		case i+2 < len(path) && path[i] == '%' && (path[i+1] == '2' && (path[i+2]|0x20) == 'f' || path[i+1] == '5' && (path[i+2]|0x20) == 'c'):
			sep = 3
		default:
			continue
		}
		seg := path[start:i]
		if j := bytes.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j]
		}
		if dots(seg) > 0 {
			return true
		}
		start = i + sep
		i += sep - 1
	}
	return false
}

// hasDotSegment reports whether path may hold a "." or ".." segment,
// plain or percent-encoded: any segment that starts with '.' or "%2e".
func hasDotSegment(path []byte) bool {
	for i := 0; i < len(path); i++ {
		if path[i] != '/' {
			continue
		}
		if i+1 < len(path) && (path[i+1] == '.' || path[i+1] == '%') {
			return true
		}
	}
	return len(path) > 0 && (path[0] == '.' || path[0] == '%')
}

// dots returns 1 for a "." segment, 2 for "..", 0 for any other; "%2e"
// and "%2E" count as a dot.
func dots(seg []byte) int {
	n := 0
	for len(seg) > 0 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return 0
		}
		n++
		if n > 2 {
			return 0
		}
	}
	return n
}
