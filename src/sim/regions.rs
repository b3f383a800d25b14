//! The region latency table: measured average round trips between cloud regions, the only
//! source of link latency in the simulator.
//!
//! Owns parsing the table and answering "what is the round trip between these regions".
//! Never reads anything at run time: the table is compiled in from `data/region_rtt_ms.csv`
//! (a copy of the project's shared data file; its header names the source: IBM Cloud VPC
//! documentation, "Network latency", inter-region table of 8 Feb 2026, average round trips
//! measured 10 Jan - 8 Feb 2026; the 2 ms diagonal is an assumption of that file).

use std::sync::OnceLock;

/// The table as shipped with the crate.
const BUILTIN_TABLE: &str = include_str!("../../data/region_rtt_ms.csv");

/// Microseconds per millisecond: the table is in ms, the simulator's clock in µs.
const MICROS_PER_MILLI: u64 = 1_000;

/// A region: an index into a `RegionTable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region(pub(crate) u8);

impl Region {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Round-trip times between named regions, in milliseconds, row = from, column = to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionTable {
    names: Vec<String>,
    rtt_ms: Vec<Vec<u32>>,
}

/// Most regions a table may have: a `Region` is one byte.
const MAX_REGIONS: usize = u8::MAX as usize;

impl RegionTable {
    /// The table compiled into the crate (12 regions).
    pub fn builtin() -> &'static RegionTable {
        static TABLE: OnceLock<RegionTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            RegionTable::parse(BUILTIN_TABLE).expect("data/region_rtt_ms.csv is well formed")
        })
    }

    /// Parses the CSV format of `data/region_rtt_ms.csv`: `#` comment lines, a header
    /// `region,<name>,...`, then one row per region in the header's order.
    pub fn parse(text: &str) -> Result<RegionTable, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let header = lines.next().ok_or("no header row")?;
        let mut cols = header.split(',');
        if cols.next() != Some("region") {
            return Err(format!("header must start with `region`: {header}"));
        }
        let names: Vec<String> = cols.map(|c| c.trim().to_string()).collect();
        if names.is_empty() || names.len() > MAX_REGIONS {
            return Err(format!("{} regions (1 to {MAX_REGIONS})", names.len()));
        }
        let mut rtt_ms = Vec::with_capacity(names.len());
        for (i, line) in lines.enumerate() {
            let mut cells = line.split(',');
            let name = cells.next().unwrap_or_default().trim();
            if names.get(i).map(String::as_str) != Some(name) {
                return Err(format!("row {i} is `{name}`, the header says otherwise"));
            }
            let row = cells
                .map(|c| {
                    c.trim()
                        .parse::<u32>()
                        .map_err(|e| format!("{name}: {c}: {e}"))
                })
                .collect::<Result<Vec<u32>, String>>()?;
            if row.len() != names.len() {
                return Err(format!("row {name} has {} cells", row.len()));
            }
            if row.contains(&0) {
                return Err(format!("row {name} has a zero round trip"));
            }
            rtt_ms.push(row);
        }
        if rtt_ms.len() != names.len() {
            return Err(format!("{} rows for {} regions", rtt_ms.len(), names.len()));
        }
        Ok(RegionTable { names, rtt_ms })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn regions(&self) -> impl Iterator<Item = Region> {
        (0..self.names.len()).map(|i| Region(i as u8))
    }

    pub fn name(&self, region: Region) -> &str {
        &self.names[region.index()]
    }

    pub fn by_name(&self, name: &str) -> Option<Region> {
        self.names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| Region(i as u8))
    }

    /// The measured round trip from `from` to `to`, in milliseconds.
    pub fn rtt_ms(&self, from: Region, to: Region) -> u32 {
        self.rtt_ms[from.index()][to.index()]
    }

    /// The round trip in microseconds.
    pub fn rtt_us(&self, from: Region, to: Region) -> u64 {
        self.rtt_ms(from, to) as u64 * MICROS_PER_MILLI
    }

    /// One-way latency: half the round trip, in microseconds.
    pub fn one_way_us(&self, from: Region, to: Region) -> u64 {
        self.rtt_us(from, to) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_has_the_twelve_measured_regions() {
        let t = RegionTable::builtin();
        assert_eq!(t.len(), 12);
        let frankfurt = t.by_name("Frankfurt").unwrap();
        let london = t.by_name("london").unwrap();
        let sydney = t.by_name("Sydney").unwrap();
        assert_eq!(t.rtt_ms(frankfurt, london), 13);
        assert_eq!(t.rtt_ms(sydney, t.by_name("SaoPaulo").unwrap()), 324);
        assert_eq!(t.one_way_us(frankfurt, london), 6_500);
        assert_eq!(t.rtt_ms(sydney, sydney), 2);
        assert_eq!(t.name(frankfurt), "Frankfurt");
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert!(RegionTable::parse("").is_err());
        assert!(
            RegionTable::parse("region,A,B\nA,2,3\n").is_err(),
            "a row short"
        );
        assert!(
            RegionTable::parse("region,A,B\nA,2,3\nC,3,2\n").is_err(),
            "wrong name"
        );
        assert!(RegionTable::parse("region,A\nA,x\n").is_err());
        assert!(RegionTable::parse("region,A\nA,0\n").is_err());
        let ok = RegionTable::parse("# c\nregion,A,B\nA,2,30\nB,31,2\n").unwrap();
        assert_eq!(ok.rtt_ms(Region(1), Region(0)), 31);
    }
}
