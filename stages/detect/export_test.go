package detect

// Reads are the statements Poll reads with, by name, for the EXPLAIN test.
// The plan takes the race, the poll, the widest window in minutes and the
// span's start; the entrants the race; the others the race, the poll and
// the history's start.
func Reads() map[string]string {
	return map[string]string{"plan": sqlPlan, "entrants": sqlEntrants, "polls": sqlPolls, "money": sqlMoney, "prices": sqlPrices}
}
