package nztabsim

// venue is a racecourse a simulated meeting can be held at.
type venue struct {
	name, state string
	// synthetic marks an all-weather thoroughbred track.
	synthetic bool
	// direction is "Left" or "Right" (anticlockwise or clockwise).
	direction string
}

// kind is one (country, category) combination of meetings.
type kind struct {
	country, category string
}

// lexicon holds the word lists the generator draws from. It is built once
// per simulator and only read afterwards.
type lexicon struct {
	venues      map[kind][]venue
	horseWords1 []string
	horseWords2 []string
	dogWords1   []string
	dogWords2   []string
	firstNames  []string
	lastNames   []string
	sponsors    []string
	colours     []string
	patterns    []string
	locations   []string
	weather     []string
	rails       []string
	changes     []string
}

func newLexicon() *lexicon {
	return &lexicon{
		venues: map[kind][]venue{
			{"NZ", "T"}: {
				{"Ellerslie", "NZ", false, "Right"}, {"Te Rapa", "NZ", false, "Left"},
				{"Trentham", "NZ", false, "Left"}, {"Riccarton Park", "NZ", false, "Left"},
				{"Awapuni Synthetic", "NZ", true, "Left"}, {"Otaki", "NZ", false, "Left"},
				{"Hastings", "NZ", false, "Left"}, {"Tauranga", "NZ", false, "Left"},
				{"Pukekohe Park", "NZ", false, "Left"}, {"Wanganui", "NZ", false, "Left"},
				{"Cambridge Synthetic", "NZ", true, "Right"}, {"Wingatui", "NZ", false, "Left"},
			},
			{"NZ", "H"}: {
				{"Addington", "NZ", false, "Left"}, {"Alexandra Park", "NZ", false, "Left"},
				{"Cambridge", "NZ", false, "Left"}, {"Winton", "NZ", false, "Left"},
				{"Forbury Park", "NZ", false, "Left"}, {"Ashburton", "NZ", false, "Left"},
				{"Rangiora", "NZ", false, "Left"}, {"Oamaru", "NZ", false, "Left"},
			},
			{"AUS", "T"}: {
				{"Randwick", "NSW", false, "Right"}, {"Flemington", "VIC", false, "Left"},
				{"Eagle Farm", "QLD", false, "Right"}, {"Morphettville", "SA", false, "Left"},
				{"Ascot", "WA", false, "Left"}, {"Grafton", "NSW", false, "Right"},
				{"Sandown", "VIC", false, "Left"}, {"Doomben", "QLD", false, "Right"},
				{"Pakenham Synthetic", "VIC", true, "Left"}, {"Rosehill", "NSW", false, "Right"},
			},
			{"AUS", "H"}: {
				{"Menangle", "NSW", false, "Left"}, {"Melton", "VIC", false, "Left"},
				{"Albion Park", "QLD", false, "Left"}, {"Globe Derby", "SA", false, "Left"},
				{"Gloucester Park", "WA", false, "Left"}, {"Bathurst", "NSW", false, "Left"},
			},
			{"NZ", "G"}: {
				{"Addington", "NZ", false, "Left"}, {"Manukau", "NZ", false, "Left"},
				{"Palmerston North", "NZ", false, "Left"}, {"Ascot Park", "NZ", false, "Left"},
			},
			{"AUS", "G"}: {
				{"Sandown Park", "VIC", false, "Left"}, {"Wentworth Park", "NSW", false, "Left"},
				{"Albion Park", "QLD", false, "Left"}, {"Angle Park", "SA", false, "Left"},
				{"Cannington", "WA", false, "Left"},
			},
			{"USA", "T"}: {
				{"Belmont Park", "NY", false, "Left"}, {"Penn National", "PA", false, "Left"},
				{"Mahoning Valley", "OH", false, "Left"}, {"Delaware Park", "DE", false, "Left"},
				{"Evangeline Downs", "LA", false, "Left"},
			},
			{"USA", "H"}: {
				{"Yonkers", "NY", false, "Left"}, {"Hoosier Park", "IN", false, "Left"},
				{"Northfield Park", "OH", false, "Left"},
			},
			{"UK", "T"}: {
				{"Newmarket", "GBR", false, "Right"}, {"Doncaster", "GBR", false, "Left"},
				{"Chepstow", "GBR", false, "Left"}, {"Lingfield", "GBR", true, "Left"},
			},
			{"UK", "G"}: {
				{"Romford", "UK", false, "Left"}, {"Towcester", "UK", false, "Left"},
				{"Sheffield", "UK", false, "Left"}, {"Monmore", "UK", false, "Left"},
			},
		},
		horseWords1: []string{
			"Silver", "Golden", "Midnight", "Southern", "Royal", "Lucky", "Wild", "Little",
			"Captain", "Lady", "Dancing", "Rocky", "Stormy", "Quiet", "Bold", "Shining",
			"Whispering", "Flying", "Hidden", "Ruby", "Crimson", "Misty", "Thunder", "Sweet",
			"Iron", "Velvet", "Copper", "Desert", "Ocean", "Northern",
		},
		horseWords2: []string{
			"Comet", "Legend", "Tide", "Echo", "Spirit", "Warrior", "Dancer", "Dream",
			"Rose", "Arrow", "Storm", "Star", "Harbour", "Melody", "Knight", "Valley",
			"Belle", "Ranger", "Flame", "Whisper", "Journey", "Bay", "Crown", "Charm",
			"Rebel", "Quest", "Falcon", "Breeze", "Sovereign", "Promise",
		},
		dogWords1: []string{
			"Zippy", "Bolt", "Dash", "Rapid", "Turbo", "Sonic", "Swift", "Jet",
			"Rocket", "Blaze", "Nitro", "Flash", "Zoom", "Hurricane", "Laser", "Spark",
		},
		dogWords2: []string{
			"Bella", "Max", "Rosie", "Buster", "Molly", "Duke", "Lola", "Rex",
			"Penny", "Ace", "Daisy", "Bruno", "Ruby", "Chief", "Poppy", "Ziggy",
		},
		firstNames: []string{
			"Kate", "Craig", "Opie", "Sam", "Ashvin", "Danielle", "Michael", "Joe",
			"Lisa", "Vinnie", "Ryan", "Warren", "Masa", "Samantha", "Jonathan", "Blake",
			"Kelly", "Zac", "Natasha", "Tim", "Hannah", "Leah", "Ben", "Rosie",
		},
		lastNames: []string{
			"Hercock", "Grylls", "Bosson", "Spratt", "Goindasamy", "Johnson", "McNab",
			"Doyle", "Allpress", "Colgan", "Elliot", "Kennedy", "Hashizume", "Collett",
			"Riddell", "Shinn", "Myers", "Purdon", "Dunn", "Williamson", "Rasmussen",
			"Butcher", "Hamill", "French",
		},
		sponsors: []string{
			"PRYDA", "REGENT CAR COURT", "MITAVITE", "HYGAIN", "SKY RACING", "TAB",
			"NZB INSURANCE", "GARRARDS", "DUNSTAN", "RED SNAPPER", "VALLEY INN",
			"ACCELL THERAPY", "HOLMES & CO", "MVS EQUINE", "BREEDERS STAKES",
			"CLUBHOUSE CAFE", "ACTIVE ELECTRICAL", "CENTRAL ITM",
		},
		colours: []string{
			"Cerise", "Gold", "Royal blue", "White", "Black", "Emerald", "Red",
			"Navy", "Orange", "Yellow", "Purple", "Silver", "Maroon", "Sky blue",
		},
		patterns: []string{
			"hoops", "stripes", "diamonds", "checks", "sash", "chevrons", "stars",
			"spots", "halves", "quarters",
		},
		locations: []string{
			"Awapuni", "Cambridge", "Matamata", "Riccarton", "Te Akau", "Ellerslie",
			"Hastings", "Otaki", "Randwick", "Flemington", "Caulfield", "Rosehill",
		},
		weather: []string{"Fine", "Overcast", "Showery", "Cloudy", "FINE"},
		rails: []string{
			"True", "Out 2m", "Out 3m", "Out 4m", "Out 5m Entire Circuit",
			"True | No Rain Last 24 Hours",
		},
		changes: []string{
			"Gelding", "Blinkers First Time", "Blinkers Off", "Tongue Tie On",
			"Stable Change", "Gear Change - Nose Band Off",
		},
	}
}
