// Package fifo is a growable ring-buffer queue for one goroutine: the
// event loops keep their calls, chunks and clients in it.
package fifo

// FIFO is a growable ring buffer queue. The zero value is ready. It is not
// safe for concurrent use: each one belongs to one event loop.
type FIFO[T any] struct {
	buf  []T
	head int
	n    int
}

// Len is the number of queued items.
func (q *FIFO[T]) Len() int { return q.n }

// Push appends v at the tail.
func (q *FIFO[T]) Push(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = v
	q.n++
}

// Front returns the head item; ok is false when the queue is empty.
func (q *FIFO[T]) Front() (v T, ok bool) {
	if q.n == 0 {
		return v, false
	}
	return q.buf[q.head], true
}

// Back returns the newest item; ok is false when the queue is empty.
func (q *FIFO[T]) Back() (v T, ok bool) {
	if q.n == 0 {
		return v, false
	}
	return q.At(q.n - 1), true
}

// Pop removes and returns the head item; ok is false when the queue is empty.
func (q *FIFO[T]) Pop() (v T, ok bool) {
	if q.n == 0 {
		return v, false
	}
	var zero T
	v = q.buf[q.head]
	q.buf[q.head] = zero
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	return v, true
}

// At returns the i-th item from the head, 0 <= i < Len.
func (q *FIFO[T]) At(i int) T {
	return q.buf[(q.head+i)&(len(q.buf)-1)]
}

func (q *FIFO[T]) grow() {
	size := 2 * len(q.buf)
	if size == 0 {
		size = 8
	}
	buf := make([]T, size)
	for i := 0; i < q.n; i++ {
		buf[i] = q.At(i)
	}
	q.buf, q.head = buf, 0
}
