package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/modelgate/modelgate/internal/store"
)

// ErrCorrupt is wrapped by Open's refusal of a state file that exists but
// cannot be trusted: empty, cut short, with damaged pages or records, or
// not a bbolt file at all.
var ErrCorrupt = errors.New("damaged")

// corrupt is Open's refusal of a damaged state file: it names the file,
// the damage and the ways out.
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("state file %q is %w: %s. Restore a backup: stop modelgate, copy a file made by "+
		"'modelgate state backup' to %s and start again (docs/configuration.md, \"Backup and restore\"); "+
		"or move the file aside to start over with no endpoints, rollouts or events",
		path, ErrCorrupt, fmt.Sprintf(format, args...), path)
}

// The page layout of bbolt's file format version 2 (go.etcd.io/bbolt
// internal/common: page.go, meta.go, bucket.go), the format every bbolt
// release since 1.0 reads and writes; a file of another version is refused
// by bbolt's own open before verifyFile reads a page. Integers are in the
// machine's byte order, as bbolt writes them.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	branchElemSize   = 16 // pos u32, ksize u32, child page u64
	leafElemSize     = 16 // flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root page u64 (0: inline), sequence u64
	metaSize         = 64 // magic, version, page size, flags, root bucket, freelist, pages, txid, checksum

	branchPage   = 0x01
	leafPage     = 0x02
	freelistPage = 0x10
	bucketLeaf   = 0x01 // a leaf element whose value is a bucket

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)
	// overflowCount in a freelist page's count says the count is the
	// page's first id slot.
	overflowCount = 0xFFFF
)

var order = binary.NativeEndian

// verifyFile checks an existing state file before bbolt maps it for
// writing. bbolt validates only its two meta pages (magic, version,
// checksum) and trusts the rest of the file: it follows page numbers and
// element offsets found there without bounds checks, so a file cut short or
// with a damaged page makes it panic ("invalid freelist page"), fault on
// memory past the end of the file, or follow a page that points back at
// itself forever, and it has no option to check instead. verifyFile reads
// the page tree with bounds-checked reads: every page reached lies inside
// the file, is the page it claims to be, has the type its place requires,
// holds its elements inside itself, and is reached once, as a page in use
// or a free one. After it, bbolt can follow the file without crashing, and
// its own consistency check (checkRecords) is safe to run. It takes bbolt's
// shared lock for the duration, so a file another modelgate is writing
// gives ErrLocked, not a false alarm.
func verifyFile(path string, size int64) error {
	if size == 0 {
		return corrupt(path, "the file is empty (0 bytes)")
	}
	// bbolt's read-only open validates the meta pages and finds the page
	// size; without PreLoadFreelist it reads no other page.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return openError(path, err)
	}
	defer db.Close()
	pageSize := db.Info().PageSize

	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open state file %q: %w", path, err)
	}
	defer f.Close()
	m, err := readMeta(f, pageSize)
	if err != nil {
		return corrupt(path, "%v", err)
	}
	if pages := uint64(size) / uint64(pageSize); m.pages > pages {
		return corrupt(path, "the file is cut short: it has %d bytes, its header says %d (%d pages of %d bytes)",
			size, m.pages*uint64(pageSize), m.pages, pageSize)
	}
	w := &pageWalker{r: f, pageSize: pageSize, pages: m.pages, seen: make([]bool, m.pages), maxElems: uint64(size) / leafElemSize}
	if err := w.node(m.root, "the root bucket"); err != nil {
		return corrupt(path, "%v", err)
	}
	if m.freelist != noFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return corrupt(path, "%v", err)
		}
	}
	return nil
}

// openError explains why bbolt could not open an existing state file.
func openError(path string, err error) error {
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("state file %q is %w", path, ErrLocked)
	case errors.As(err, &pathErr):
		return fmt.Errorf("open state file %q: %w", path, err)
	case errors.Is(err, berrors.ErrInvalid):
		return corrupt(path, "it is not a bbolt file, or both of its header pages are damaged")
	case errors.Is(err, berrors.ErrVersionMismatch):
		return corrupt(path, "its header pages carry another bbolt file format version")
	case errors.Is(err, berrors.ErrChecksum):
		return corrupt(path, "both of its header pages fail their checksum")
	default:
		return corrupt(path, "bbolt cannot open it: %v", err)
	}
}

// meta is what verifyFile needs of a meta page.
type meta struct {
	root, freelist, pages, txid uint64
}

// readMeta reads both meta pages and returns the one bbolt uses: the valid
// one with the higher transaction id.
func readMeta(r io.ReaderAt, pageSize int) (meta, error) {
	var best meta
	found := false
	for i := range 2 {
		buf := make([]byte, metaSize)
		if _, err := r.ReadAt(buf, int64(i*pageSize+pageHeaderSize)); err != nil {
			return meta{}, fmt.Errorf("read header page %d: %w", i, err)
		}
		h := fnv.New64a()
		h.Write(buf[:56])
		if order.Uint32(buf) != boltMagic || order.Uint32(buf[4:]) != boltVersion ||
			order.Uint32(buf[8:]) != uint32(pageSize) || order.Uint64(buf[56:]) != h.Sum64() {
			continue
		}
		m := meta{root: order.Uint64(buf[16:]), freelist: order.Uint64(buf[32:]), pages: order.Uint64(buf[40:]), txid: order.Uint64(buf[48:])}
		if !found || m.txid > best.txid {
			best, found = m, true
		}
	}
	if !found {
		return meta{}, errors.New("neither header page is valid")
	}
	return best, nil
}

// pageWalker reads a bbolt file's page tree from its start.
type pageWalker struct {
	r io.ReaderAt
	// elems counts the elements checked; each takes 16 bytes of its own in
	// a sound file, so more than maxElems (the file's size / 16) means some
	// are reached twice: inline buckets shared by several keys, which
	// bbolt's page ids (seen) do not catch, and which nested 60 deep would
	// take 2^60 steps.
	elems, maxElems uint64
	pageSize        int
	// pages is the high-water mark: pages 0..pages-1 are in use or free.
	pages uint64
	// seen marks the pages reached so far, in use or free.
	seen []bool
}

// page reads page id with its overflow pages, and marks them reached.
func (w *pageWalker) page(id uint64, what string) ([]byte, error) {
	if id < 2 || id >= w.pages {
		return nil, fmt.Errorf("%s: page %d is outside the file's pages 2..%d", what, id, w.pages-1)
	}
	off := int64(id) * int64(w.pageSize)
	hdr := make([]byte, pageHeaderSize)
	if _, err := w.r.ReadAt(hdr, off); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", what, id, err)
	}
	if got := order.Uint64(hdr); got != id {
		return nil, fmt.Errorf("%s: page %d holds page %d", what, id, got)
	}
	overflow := uint64(order.Uint32(hdr[12:]))
	if overflow >= w.pages-id {
		return nil, fmt.Errorf("%s: page %d and its %d overflow pages run past the file's last page %d", what, id, overflow, w.pages-1)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p] {
			return nil, fmt.Errorf("%s: page %d is reached twice", what, p)
		}
		w.seen[p] = true
	}
	buf := make([]byte, (overflow+1)*uint64(w.pageSize))
	if _, err := w.r.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("%s: read page %d: %w", what, id, err)
	}
	return buf, nil
}

// node checks the branch or leaf page id and everything below it.
func (w *pageWalker) node(id uint64, what string) error {
	buf, err := w.page(id, what)
	if err != nil {
		return err
	}
	return w.nodeIn(buf, id, what)
}

// nodeIn checks a branch or leaf page held in buf: a page read from the
// file, or (id 0) an inline bucket's page inside a value, which is always
// a leaf.
func (w *pageWalker) nodeIn(buf []byte, id uint64, what string) error {
	where := fmt.Sprintf("page %d", id)
	if id == 0 {
		where = "its inline page"
	}
	if len(buf) < pageHeaderSize {
		return fmt.Errorf("%s: %s is %d bytes, shorter than a page header", what, where, len(buf))
	}
	flags, count := order.Uint16(buf[8:]), int(order.Uint16(buf[10:]))
	elemSize := leafElemSize
	switch {
	case flags == leafPage:
	case flags == branchPage && id != 0:
		elemSize = branchElemSize
		if count == 0 {
			return fmt.Errorf("%s: branch %s has no elements", what, where)
		}
	default:
		return fmt.Errorf("%s: %s has type %#x where a branch or leaf page belongs", what, where, flags)
	}
	if pageHeaderSize+count*elemSize > len(buf) {
		return fmt.Errorf("%s: %s claims %d elements, more than it holds", what, where, count)
	}
	if w.elems += uint64(count); w.elems > w.maxElems {
		return fmt.Errorf("%s: %s: more elements are reached than the file can hold: buckets are shared", what, where)
	}
	for i := range count {
		e := pageHeaderSize + i*elemSize
		if flags == branchPage {
			if _, ok := span(buf, e, order.Uint32(buf[e:]), order.Uint32(buf[e+4:])); !ok {
				return fmt.Errorf("%s: element %d of %s lies outside it", what, i, where)
			}
			if err := w.node(order.Uint64(buf[e+8:]), what); err != nil {
				return err
			}
			continue
		}
		elemFlags, pos, ksize, vsize := order.Uint32(buf[e:]), order.Uint32(buf[e+4:]), order.Uint32(buf[e+8:]), order.Uint32(buf[e+12:])
		kv, ok := span(buf, e, pos, ksize+vsize)
		if !ok || ksize+vsize < ksize {
			return fmt.Errorf("%s: element %d of %s lies outside it", what, i, where)
		}
		if elemFlags&bucketLeaf == 0 {
			continue
		}
		sub := fmt.Sprintf("bucket %q", kv[:ksize])
		value := kv[ksize:]
		if len(value) < bucketHeaderSize {
			return fmt.Errorf("%s: its header is %d bytes, shorter than a bucket header", sub, len(value))
		}
		var err error
		if root := order.Uint64(value); root == 0 {
			err = w.nodeIn(value[bucketHeaderSize:], 0, sub)
		} else {
			err = w.node(root, sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// span returns buf[from+pos : from+pos+n] if it lies inside buf.
func span(buf []byte, from int, pos, n uint32) ([]byte, bool) {
	start := uint64(from) + uint64(pos)
	end := start + uint64(n)
	if end > uint64(len(buf)) {
		return nil, false
	}
	return buf[start:end], true
}

// freelist checks the freelist page: every id it lists lies inside the
// file, is listed once and is not a page in use.
func (w *pageWalker) freelist(id uint64) error {
	buf, err := w.page(id, "the freelist")
	if err != nil {
		return err
	}
	if flags := order.Uint16(buf[8:]); flags != freelistPage {
		return fmt.Errorf("the freelist: page %d has type %#x, not a freelist page", id, flags)
	}
	ids := buf[pageHeaderSize:]
	count := uint64(order.Uint16(buf[10:]))
	if count == overflowCount {
		count = order.Uint64(ids)
		ids = ids[8:]
	}
	if count > uint64(len(ids)/8) {
		return fmt.Errorf("the freelist: page %d claims %d free pages, more than it holds", id, count)
	}
	for i := range count {
		free := order.Uint64(ids[i*8:])
		if free < 2 || free >= w.pages {
			return fmt.Errorf("the freelist lists page %d, outside the file's pages 2..%d", free, w.pages-1)
		}
		if w.seen[free] {
			return fmt.Errorf("the freelist lists page %d, which is in use or listed twice", free)
		}
		w.seen[free] = true
	}
	return nil
}

// checkRecords runs bbolt's consistency check (keys in order, every page
// in use or free) and reads every record of modelgate's layout that exists,
// so that a damaged value is found at start rather than when it is first
// read. It runs after verifyFile, which made following the file safe.
func checkRecords(tx *bbolt.Tx) error {
	var problems []error
	for err := range tx.Check() {
		// Drain the channel: Check's goroutine ends when it is read out.
		if len(problems) < 3 {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	if meta := tx.Bucket(bucketMeta); meta != nil {
		for _, k := range [][]byte{metaRevision, metaSeq} {
			if v := meta.Get(k); v != nil && len(v) != 8 {
				return fmt.Errorf("meta %q is %d bytes, not 8", k, len(v))
			}
		}
	}
	if kv := tx.Bucket(bucketKV); kv != nil {
		if err := kv.ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				return fmt.Errorf("key %q: value of %d bytes, too short for its revision", k, len(v))
			}
			return nil
		}); err != nil {
			return err
		}
	}
	events := tx.Bucket(bucketEvents)
	if events == nil {
		return nil
	}
	var last uint64
	if err := events.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("event key %x is not a sequence number", k)
		}
		seq := binary.BigEndian.Uint64(k)
		// Decoded as Events and Watch decode it.
		var e store.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		if e.Seq != seq {
			return fmt.Errorf("event %d holds event %d", seq, e.Seq)
		}
		last = seq
		return nil
	}); err != nil {
		return err
	}
	if meta := tx.Bucket(bucketMeta); meta != nil && last > getUint(meta, metaSeq) {
		return fmt.Errorf("the event log holds event %d, past the last sequence number %d", last, getUint(meta, metaSeq))
	}
	return nil
}
