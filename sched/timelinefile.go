package sched

import (
	"os"
	"path/filepath"
)

// WriteFile writes tl to the file name, as SVG when the name ends in
// ".svg" (WriteSVG) and as JSON otherwise (WriteJSON).
func (tl *Timeline) WriteFile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if filepath.Ext(name) == ".svg" {
		err = tl.WriteSVG(f)
	} else {
		err = tl.WriteJSON(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
