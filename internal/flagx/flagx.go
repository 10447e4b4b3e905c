// Package flagx holds the flag.Value types the commands' configurations
// share: numbers and durations checked as they are set, numbers whose 0
// means "off" (kept negative in a Config, where 0 means the default), and
// comma-separated lists.
package flagx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Number is what a Checked flag holds; time.Duration included.
type Number interface{ ~int | ~int64 }

// Checked is a numeric flag whose value is checked as it is set.
type Checked[T Number] struct {
	p     *T
	check func(T) error
	off   bool // 0 means off: stored as -1
}

// Check returns a flag setting *p to values check accepts.
func Check[T Number](p *T, check func(T) error) *Checked[T] {
	return &Checked[T]{p: p, check: check}
}

// Off returns a flag whose 0 means off: it sets *p to -1 for 0, and
// refuses negative values; what says what 0 means, for the error.
func Off[T Number](p *T, what string) *Checked[T] {
	return &Checked[T]{p: p, off: true, check: func(v T) error {
		if v < 0 {
			return errors.New("must not be negative (0: " + what + ")")
		}
		return nil
	}}
}

func (f *Checked[T]) String() string {
	if f == nil || f.p == nil || f.off && *f.p < 0 {
		var zero T
		return fmt.Sprint(zero) // flag.PrintDefaults compares the default with it
	}
	return fmt.Sprint(*f.p) // a time.Duration as "5s"
}

func (f *Checked[T]) Set(s string) error {
	var v T
	switch p := any(&v).(type) {
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("parse error")
		}
		*p = d
	default:
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil || int64(T(n)) != n {
			return errors.New("parse error")
		}
		v = T(n)
	}
	if err := f.check(v); err != nil {
		return err
	}
	if f.off && v == 0 {
		v = -1
	}
	*f.p = v
	return nil
}

// Positive accepts values above 0.
func Positive[T Number](v T) error {
	if v <= 0 {
		return errors.New("must be more than 0")
	}
	return nil
}

// NonNegative accepts 0 and above.
func NonNegative[T Number](v T) error {
	if v < 0 {
		return errors.New("must not be negative")
	}
	return nil
}

// List is a comma-separated list of strings; blanks are dropped.
type List struct{ P *[]string }

func (f List) String() string {
	if f.P == nil {
		return ""
	}
	return strings.Join(*f.P, ",")
}

func (f List) Set(s string) error {
	var list []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	*f.P = list
	return nil
}
