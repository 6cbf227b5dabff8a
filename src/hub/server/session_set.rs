//! The sessions of one id or one channel, in the routing indexes.
//!
//! Most ids have one session (one tab), and a channel often starts with
//! one subscriber, so a [`SessionSet`] holds a single session inline and
//! allocates a set only from the second one on: an index entry for one
//! session costs no allocation of its own.

use std::collections::{hash_set, HashSet};

use crate::ids::SessionId;

/// A set of sessions: none, one held inline, or several.
pub enum SessionSet {
    One(SessionId),
    Many(HashSet<SessionId>),
}

impl Default for SessionSet {
    /// The empty set, which allocates nothing.
    fn default() -> Self {
        Self::Many(HashSet::new())
    }
}

impl SessionSet {
    /// Adds `session`; false when it was there already.
    pub fn insert(&mut self, session: SessionId) -> bool {
        match self {
            Self::One(one) if *one == session => false,
            Self::One(one) => {
                let one = *one;
                *self = Self::Many(HashSet::from([one, session]));
                true
            }
            Self::Many(many) if many.is_empty() => {
                *self = Self::One(session);
                true
            }
            Self::Many(many) => many.insert(session),
        }
    }

    /// Removes `session`; false when it was not there.
    pub fn remove(&mut self, session: &SessionId) -> bool {
        match self {
            Self::One(one) if one == session => {
                *self = Self::default();
                true
            }
            Self::One(_) => false,
            Self::Many(many) => many.remove(session),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::One(_) => false,
            Self::Many(many) => many.is_empty(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(many) => many.len(),
        }
    }

    pub fn contains(&self, session: &SessionId) -> bool {
        match self {
            Self::One(one) => one == session,
            Self::Many(many) => many.contains(session),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            Self::One(one) => Iter {
                one: Some(one),
                many: None,
            },
            Self::Many(many) => Iter {
                one: None,
                many: Some(many.iter()),
            },
        }
    }
}

/// The sessions of a [`SessionSet`], in no particular order.
pub struct Iter<'a> {
    one: Option<&'a SessionId>,
    many: Option<hash_set::Iter<'a, SessionId>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a SessionId;

    fn next(&mut self) -> Option<&'a SessionId> {
        if let Some(one) = self.one.take() {
            return Some(one);
        }
        self.many.as_mut()?.next()
    }
}

impl<'a> IntoIterator for &'a SessionSet {
    type Item = &'a SessionId;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(set: &SessionSet) -> Vec<SessionId> {
        let mut all: Vec<SessionId> = set.iter().copied().collect();
        all.sort();
        all
    }

    #[test]
    fn one_session_is_held_inline_and_a_second_makes_a_set() {
        let (a, b) = (SessionId::next(), SessionId::next());
        let mut set = SessionSet::default();
        assert!(set.is_empty());
        assert!(set.insert(a));
        assert!(!set.insert(a), "already there");
        assert!(matches!(set, SessionSet::One(_)));
        assert!(set.insert(b));
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&b));
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(sorted(&set), expected);
    }

    #[test]
    fn removing_the_last_session_leaves_it_empty() {
        let (a, b) = (SessionId::next(), SessionId::next());
        let mut set = SessionSet::default();
        set.insert(a);
        assert!(!set.remove(&b));
        assert!(set.remove(&a));
        assert!(set.is_empty());
        assert_eq!(set.iter().count(), 0);
        set.insert(a);
        set.insert(b);
        assert!(set.remove(&a) && set.remove(&b));
        assert!(set.is_empty());
        assert!(set.insert(a));
        assert_eq!(sorted(&set), [a]);
    }
}
