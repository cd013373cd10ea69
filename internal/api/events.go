package api

import (
	"encoding/json"
	"time"
)

// Event is a durable record of something that happened. Seq is assigned by
// the store at commit and strictly increases across the whole log (any Seq
// the caller sets is ignored). A zero Time is set to the commit time.
type Event struct {
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Endpoint string          `json:"endpoint,omitempty"`
	Type     string          `json:"type"`
	Actor    string          `json:"actor,omitempty"`
	Message  string          `json:"message"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// SnapshotInfo describes a snapshot: the whole state as of one store
// revision.
type SnapshotInfo struct {
	// Revision is the store revision the snapshot holds.
	Revision uint64 `json:"revision"`
	// LastSeq is the Seq of the last event it holds; 0 when it holds none.
	LastSeq uint64 `json:"last_seq"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
}

// EventList is the answer of GET /api/v1/events.
type EventList struct {
	Events []Event `json:"events"`
}
