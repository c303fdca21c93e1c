package netconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Framing (RFC 6242). base:1.0 ends every message with "]]>]]>"; base:1.1
// sends chunks "\n#LEN\n" DATA ... and ends the message with "\n##\n".
const (
	endOfMessage = "]]>]]>"
	maxChunkSize = 4294967295 // RFC 6242 §4.2
)

// ErrTooLarge is returned for a message over the size limit.
var ErrTooLarge = errors.New("netconf: message too large")

// errFraming is a framing violation: the session cannot continue.
var errFraming = errors.New("netconf: bad framing")

// framer reads and writes whole messages in the negotiated framing.
type framer struct {
	r       *bufio.Reader
	w       io.Writer
	chunked bool
	max     int
}

func newFramer(r io.Reader, w io.Writer, max int) *framer {
	return &framer{r: bufio.NewReaderSize(r, 64<<10), w: w, max: max}
}

// read returns the next message.
func (f *framer) read() ([]byte, error) {
	if f.chunked {
		return readChunked(f.r, f.max)
	}
	return readEOM(f.r, f.max)
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
	var msg []byte
	for {
		part, err := r.ReadSlice('>')
		msg = append(msg, part...)
		if len(msg) > max+len(endOfMessage) {
			return nil, ErrTooLarge
		}
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
		if uint64(len(msg))+n > uint64(max) {
			return nil, ErrTooLarge
		}
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(r, msg[start:]); err != nil {
			return nil, unexpected(err)
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
