package fifo

import "testing"

func TestFIFO(t *testing.T) {
	var q FIFO[int]
	next := 0
	for round := range 50 {
		for i := range round % 13 {
			q.Push(round*100 + i)
		}
		for i := range round % 7 {
			v, ok := q.Pop()
			if !ok {
				break
			}
			_ = i
			if v < next {
				t.Fatalf("popped %d after %d", v, next)
			}
			next = v
		}
	}
	for i := range q.Len() {
		if i > 0 && q.At(i) < q.At(i-1) {
			t.Fatal("queue out of order")
		}
	}
}
