package netconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
)

// Framing (RFC 6242). base:1.0 ends every message with "]]>]]>"; base:1.1
// sends chunks "\n#LEN\n" DATA ... and ends the message with "\n##\n".
const (
	endOfMessage = "]]>]]>"
	maxChunkSize = 4294967295 // RFC 6242 §4.2
)

// ErrTooLarge is returned for a message over the size limit.
var ErrTooLarge = errors.New("netconf: message too large")

// ErrBudget is returned when the memory all sessions' incoming messages may
// hold together (Config.MaxBuffered) is in use.
var ErrBudget = errors.New("netconf: the server's memory for incoming messages is in use")

// readPiece is how much of a chunk is read (and allocated) at a time: a
// chunk header announcing 4 GiB costs nothing until its bytes arrive.
const readPiece = 64 << 10

// errFraming is a framing violation: the session cannot continue.
var errFraming = errors.New("netconf: bad framing")

// framer reads and writes whole messages in the negotiated framing.
type framer struct {
	r       *bufio.Reader
	w       io.Writer
	chunked bool
	in      msgBuf
}

func newFramer(r io.Reader, w io.Writer, max int) *framer {
	return &framer{r: bufio.NewReaderSize(r, readPiece), w: w, in: msgBuf{max: max}}
}

// read returns the next message. The previous one is done with: its
// memory goes back to the budget.
func (f *framer) read() ([]byte, error) {
	f.in.release()
	if f.chunked {
		return f.in.readChunked(f.r)
	}
	return f.in.readEOM(f.r)
}

// release gives the last message's memory back to the budget (at the end
// of the session).
func (f *framer) release() { f.in.release() }

// budget is the memory the incoming messages of all sessions may hold at
// once; nil is unbounded.
type budget struct {
	max  int64
	used atomic.Int64
}

func newBudget(max int64) *budget { return &budget{max: max} }

func (b *budget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) give(n int64) {
	if b != nil {
		b.used.Add(-n)
	}
}

// msgBuf reads messages of at most max bytes, allocating as the bytes
// arrive and holding what it allocated against the shared budget.
type msgBuf struct {
	max    int
	budget *budget
	held   int64 // budget held: the capacity of the message being read or last read
}

func (m *msgBuf) release() {
	m.budget.give(m.held)
	m.held = 0
}

// grow returns msg with room for n more bytes: ErrTooLarge past limit
// bytes, ErrBudget if the shared budget cannot cover the new capacity.
func (m *msgBuf) grow(msg []byte, n, limit int) ([]byte, error) {
	need := len(msg) + n
	if need > limit {
		return nil, ErrTooLarge
	}
	if need <= cap(msg) {
		return msg, nil
	}
	newCap := min(max(2*cap(msg), need, 4096), max(limit, need))
	if !m.budget.take(int64(newCap) - m.held) {
		return nil, ErrBudget
	}
	m.held = int64(newCap)
	return append(make([]byte, 0, newCap), msg...), nil
}

// write sends one message.
func (f *framer) write(msg []byte) error {
	var err error
	if f.chunked {
		_, err = f.w.Write(appendChunked(make([]byte, 0, len(msg)+32), msg))
	} else {
		_, err = f.w.Write(append(append(make([]byte, 0, len(msg)+len(endOfMessage)), msg...), endOfMessage...))
	}
	if err != nil {
		return fmt.Errorf("netconf: write: %w", err)
	}
	return nil
}

func appendChunked(b, msg []byte) []byte {
	if len(msg) > 0 {
		b = append(b, "\n#"...)
		b = strconv.AppendInt(b, int64(len(msg)), 10)
		b = append(b, '\n')
		b = append(b, msg...)
	}
	return append(b, "\n##\n"...)
}

// readEOM reads a base:1.0 message: everything up to "]]>]]>". White space
// before a message (left over after the previous delimiter) is dropped.
func readEOM(r *bufio.Reader, max int) ([]byte, error) {
	m := msgBuf{max: max}
	return m.readEOM(r)
}

func (m *msgBuf) readEOM(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	for {
		part, err := r.ReadSlice('>')
		var gerr error
		if msg, gerr = m.grow(msg, len(part), m.max+len(endOfMessage)); gerr != nil {
			return nil, gerr
		}
		msg = append(msg, part...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(bytes.TrimSpace(msg)) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if bytes.HasSuffix(msg, []byte(endOfMessage)) {
			return bytes.TrimSpace(msg[:len(msg)-len(endOfMessage)]), nil
		}
	}
}

// readChunked reads a base:1.1 chunked message.
func readChunked(r *bufio.Reader, max int) ([]byte, error) {
	m := msgBuf{max: max}
	return m.readChunked(r)
}

func (m *msgBuf) readChunked(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	for first := true; ; first = false {
		n, end, err := readChunkHeader(r, first)
		if err != nil {
			return nil, err
		}
		if end {
			if first {
				return nil, fmt.Errorf("%w: end of chunks before any chunk", errFraming)
			}
			return msg, nil
		}
		if uint64(len(msg))+n > uint64(m.max) {
			return nil, ErrTooLarge
		}
		// Grow as the bytes arrive, never by what the header announces.
		for left := int(n); left > 0; {
			k := min(left, readPiece)
			if msg, err = m.grow(msg, k, m.max); err != nil {
				return nil, err
			}
			start := len(msg)
			msg = msg[:start+k]
			if _, err := io.ReadFull(r, msg[start:]); err != nil {
				return nil, unexpected(err)
			}
			left -= k
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readChunkHeader reads "\n#LEN\n" (a chunk) or "\n##\n" (end of chunks).
// Before the first chunk of a message, white space is tolerated.
func readChunkHeader(r *bufio.Reader, first bool) (n uint64, end bool, err error) {
	c, err := r.ReadByte()
	if first {
		for err == nil && (c == ' ' || c == '\r' || c == '\t' || c == '\n') {
			if c == '\n' {
				if p, _ := r.Peek(1); len(p) == 1 && p[0] == '#' {
					break
				}
			}
			c, err = r.ReadByte()
		}
	}
	if err != nil {
		if first {
			return 0, false, err
		}
		return 0, false, unexpected(err)
	}
	if c != '\n' {
		return 0, false, fmt.Errorf("%w: want LF before chunk header, got %q", errFraming, c)
	}
	if c, err = r.ReadByte(); err != nil {
		return 0, false, unexpected(err)
	}
	if c != '#' {
		return 0, false, fmt.Errorf("%w: want '#', got %q", errFraming, c)
	}
	digits := 0
	for {
		if c, err = r.ReadByte(); err != nil {
			return 0, false, unexpected(err)
		}
		switch {
		case c == '#' && digits == 0:
			if c, err = r.ReadByte(); err != nil {
				return 0, false, unexpected(err)
			}
			if c != '\n' {
				return 0, false, fmt.Errorf("%w: want LF after end of chunks", errFraming)
			}
			return 0, true, nil
		case c >= '0' && c <= '9':
			if (digits == 0 && c == '0') || digits >= 10 {
				return 0, false, fmt.Errorf("%w: bad chunk size", errFraming)
			}
			n = n*10 + uint64(c-'0')
			digits++
		case c == '\n' && digits > 0:
			if n > maxChunkSize {
				return 0, false, fmt.Errorf("%w: chunk size %d over %d", errFraming, n, uint64(maxChunkSize))
			}
			return n, false, nil
		default:
			return 0, false, fmt.Errorf("%w: bad chunk header byte %q", errFraming, c)
		}
	}
}
