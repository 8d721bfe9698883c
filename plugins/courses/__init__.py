"""Courses: nbgrader for several courses on one hub (``courses.list``), with a
formgrader per course and the LMS deciding who is in which (docs/courses.md)."""
