package names

// Word lists for readable names: short, common, inoffensive words.

var adjectives = []string{
	"able", "amber", "amiable", "ancient", "autumn", "azure", "bold", "brave",
	"breezy", "bright", "brisk", "calm", "candid", "celest", "clever", "cobalt",
	"cool", "coral", "cosmic", "crimson", "crisp", "curly", "dapper", "daring",
	"dawn", "deep", "dusty", "eager", "early", "easy", "echo", "elder",
	"fabled", "fair", "fancy", "fast", "fervent", "fierce", "fluffy", "fond",
	"free", "fresh", "frosty", "gallant", "gentle", "giddy", "glad", "glossy",
	"gold", "golden", "grand", "green", "gusty", "happy", "hardy", "hazy",
	"hidden", "hollow", "honest", "humble", "icy", "ivory", "jade", "jaunty",
	"jolly", "keen", "kind", "lavish", "lemon", "lilac", "lively", "loyal",
	"lucky", "lunar", "mellow", "merry", "mighty", "mint", "misty", "modest",
	"nimble", "noble", "odd", "olive", "orchid", "pale", "patient", "peppy",
	"plain", "plucky", "polite", "prime", "proud", "quick", "quiet", "rapid",
	"rare", "ready", "red", "regal", "rosy", "royal", "rugged", "rustic",
	"sable", "sage", "scarlet", "serene", "sharp", "shiny", "shy", "silent",
	"silver", "simple", "sincere", "sleek", "slow", "sly", "smart", "smooth",
	"snappy", "snowy", "soft", "solar", "sonic", "spicy", "spry", "steady",
	"stellar", "stoic", "stormy", "sturdy", "sugar", "sunny", "swift", "tame",
	"teal", "tender", "tidy", "tiny", "topaz", "tranquil", "true", "upbeat",
	"urban", "valiant", "vast", "velvet", "verdant", "vivid", "warm", "wild",
	"windy", "wise", "witful", "witty", "woven", "young", "zany", "zesty",
}

var nouns = []string{
	"acorn", "anchor", "arrow", "aspen", "atlas", "badger", "beacon", "beaver",
	"birch", "bison", "bobcat", "bramble", "breeze", "brook", "camel", "canyon",
	"cedar", "cheetah", "cliff", "clover", "cobra", "comet", "condor", "coral",
	"cove", "coyote", "crane", "crater", "creek", "delta", "dingo", "dolphin",
	"dune", "eagle", "elk", "ember", "falcon", "fern", "ferret", "finch",
	"fjord", "forest", "fox", "gazelle", "gecko", "glacier", "gopher", "grove",
	"harbor", "hazel", "heron", "hornet", "ibex", "iguana", "island", "jackal",
	"jaguar", "koala", "lagoon", "lantern", "lemur", "leopard", "lion", "llama",
	"lynx", "magpie", "maple", "marmot", "meadow", "mesa", "mink", "moon",
	"moose", "narwhal", "newt", "oasis", "ocelot", "orbit", "orca", "osprey",
	"otter", "owl", "panda", "panther", "parrot", "pebble", "pelican",
	"penguin", "pine", "planet", "prairie", "puffin", "puma", "quail", "quartz",
	"rabbit", "raven", "reef", "ridge", "river", "robin", "rocket", "salmon",
	"seal", "sequoia", "shark", "shore", "sierra", "sparrow", "spruce", "squid",
	"stork", "summit", "swan", "tapir", "tiger", "toucan", "trout", "tundra",
	"turtle", "valley", "viper", "walrus", "wasp", "weasel", "whale", "willow",
	"wolf", "wombat", "yak", "zebra",
}
